from django.db import migrations

from tickets.seeded_names import chinese_names_operation


class Migration(migrations.Migration):
    dependencies = [
        ("redeploy", "0011_binding_seen_state"),
        ("tickets", "0007_work_order_and_node_names_in_chinese"),
    ]

    # What 0008 seeded.
    operations = [
        chinese_names_operation(
            key="APPLICATION_DELETE_POD",
            work_order=("Application pod delete", "应用 Pod 删除"),
            nodes={"Approval": "审批"},
        )
    ]
