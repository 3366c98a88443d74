from django.db import migrations

from tickets.seeded_names import chinese_names_operation


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0007_work_order_and_node_names_in_chinese"),
    ]

    # What 0002 seeded.
    operations = [
        chinese_names_operation(
            key="APPLICATION_REDEPLOY",
            work_order=("Application redeploy", "应用重新部署"),
            nodes={"Approval": "审批"},
        )
    ]
