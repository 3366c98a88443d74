"""The audit log is append-only in the database itself: a trigger refuses UPDATE and DELETE on
PostgreSQL (SQLite, the demo's, has no such guard). TRUNCATE is left alone: it fires no row
trigger, and test databases are emptied with it. Deleting a user leaves its events as they are
(on_delete=DO_NOTHING; the FK has no database constraint)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INSTALL = """
CREATE OR REPLACE FUNCTION cratos_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON redeploy_auditevent
    FOR EACH ROW EXECUTE FUNCTION cratos_audit_append_only();
"""
REMOVE = """
DROP TRIGGER IF EXISTS audit_append_only ON redeploy_auditevent;
DROP FUNCTION IF EXISTS cratos_audit_append_only();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)  # no placeholders: keep % as it is

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_ticket_refused_action"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(_on_postgresql(INSTALL), _on_postgresql(REMOVE)),
    ]
