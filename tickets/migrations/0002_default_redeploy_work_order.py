from django.db import migrations


def create_default_work_order(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    WorkOrder = apps.get_model("tickets", "WorkOrder")
    ApprovalNode = apps.get_model("tickets", "ApprovalNode")
    approvers, _ = Group.objects.get_or_create(name="Approvers")
    Group.objects.get_or_create(name="Reviewers")
    work_order, created = WorkOrder.objects.get_or_create(
        key="APPLICATION_REDEPLOY",
        defaults={
            "business_type": "APPLICATION",
            "name": "Application redeploy",
            "description": "Rollout-restart an application's Deployments after approval.",
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
        ("tickets", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_default_work_order, migrations.RunPython.noop)]
