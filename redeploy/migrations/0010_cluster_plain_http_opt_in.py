"""Plain http:// API servers need an explicit opt-in. Clusters already registered on one keep
working as before: the opt-in is written down for them, where an admin can see and revoke it."""

from django.db import migrations, models


def opt_in_existing_http_clusters(apps, schema_editor):
    clusters = apps.get_model("redeploy", "KubernetesCluster")
    clusters.objects.filter(server__istartswith="http://").update(allow_plain_http=True)


class Migration(migrations.Migration):
    dependencies = [
        ("redeploy", "0009_application_owner_teams"),
    ]

    operations = [
        migrations.AddField(
            model_name="kubernetescluster",
            name="allow_plain_http",
            field=models.BooleanField(
                default=False,
                help_text="Talk to an http:// API server: credentials travel unencrypted.",
                verbose_name="allow plain HTTP",
            ),
        ),
        migrations.RunPython(opt_in_existing_http_clusters, migrations.RunPython.noop),
    ]
