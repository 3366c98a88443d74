from django.db import migrations


def create_delete_pod_work_order(apps, schema_editor):
    # The same chain as APPLICATION_REDEPLOY's (tickets 0002): one node on group Approvers.
    Group = apps.get_model("auth", "Group")
    WorkOrder = apps.get_model("tickets", "WorkOrder")
    ApprovalNode = apps.get_model("tickets", "ApprovalNode")
    approvers, _ = Group.objects.get_or_create(name="Approvers")
    work_order, created = WorkOrder.objects.get_or_create(
        key="APPLICATION_DELETE_POD",
        defaults={
            "business_type": "APPLICATION",
            "name": "Application pod delete",
            "description": "Delete pods of an application's Deployment after approval.",
            "authorization_ttl_seconds": 7200,
        },
    )
    if created:
        ApprovalNode.objects.create(
            work_order=work_order, position=1, name="Approval", node_type="OR_BATCH", group=approvers
        )


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("tickets", "0004_entry_in_use_without_application_link"),
        ("redeploy", "0007_poddeletion_poddeletiontarget"),
    ]

    operations = [migrations.RunPython(create_delete_pod_work_order, migrations.RunPython.noop)]
