from django.db import migrations
from django.db.models import Exists, OuterRef


def mark_entries_in_use(apps, schema_editor):
    # Before 0006 an entry stayed AUTHORIZED while a redeploy used its authorization; now the
    # entry says so itself (IN_USE). Redeploys under way during the upgrade keep theirs.
    TicketEntry = apps.get_model("tickets", "TicketEntry")
    RedeployOperation = apps.get_model("redeploy", "RedeployOperation")
    under_way = RedeployOperation.objects.filter(
        ticket_id=OuterRef("ticket_id"),
        application_name=OuterRef("name"),
        state__in=["QUEUED", "RUNNING"],
    )
    TicketEntry.objects.filter(state="AUTHORIZED").filter(Exists(under_way)).update(state="IN_USE")


class Migration(migrations.Migration):
    dependencies = [
        ("redeploy", "0005_delete_auditevent"),
        ("tickets", "0004_entry_in_use_without_application_link"),
    ]

    operations = [migrations.RunPython(mark_entries_in_use, migrations.RunPython.noop)]
