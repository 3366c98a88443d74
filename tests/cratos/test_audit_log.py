"""The audit log is append-only in PostgreSQL itself: raw SQL cannot rewrite or delete it, and
deleting a user leaves its events as they were."""

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action, record_event
from tests.factories import AuditEventFactory, UserFactory

pytestmark = pytest.mark.django_db


def execute(sql: str, params=()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE redeploy_auditevent SET message = 'rewritten' WHERE id = %s",
        "UPDATE redeploy_auditevent SET actor_username = '' WHERE id = %s",
        "DELETE FROM redeploy_auditevent WHERE id = %s",
    ],
)
def test_raw_sql_cannot_rewrite_or_delete_an_event(sql):
    event = AuditEventFactory(message="as it happened")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        execute(sql, [event.pk])

    event.refresh_from_db()
    assert event.message == "as it happened"


def test_the_orm_cannot_either():
    AuditEventFactory()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.update(message="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all()._raw_delete(AuditEvent.objects.db)


def test_inserts_go_on():
    assert execute(
        "INSERT INTO redeploy_auditevent (created_at, actor_username, action, outcome, "
        "ticket_no, application_name, cluster_name, namespace, deployment_name, message, "
        "resource_version, celery_task_id) VALUES "
        "(now(), 'root', 'ticket.created', 'SUCCESS', '', '', '', '', '', '', '', '')"
    )
    assert AuditEvent.objects.count() == 1


def test_truncate_empties_the_table_as_test_databases_are_flushed():
    # Transactional tests empty every table with TRUNCATE between tests; the guard lets it be.
    AuditEventFactory.create_batch(2)

    with transaction.atomic():
        execute("TRUNCATE redeploy_auditevent")
        assert AuditEvent.objects.count() == 0
        transaction.set_rollback(True)


def test_deleting_a_user_keeps_its_events_as_they_were():
    alice = UserFactory(username="alice")
    with transaction.atomic():
        event = record_event(action=Action.TICKET_CREATED, actor=alice)
    alice_id = alice.pk

    get_user_model().objects.filter(pk=alice_id).delete()

    row = AuditEvent.objects.values("actor_id", "actor_username").get(pk=event.pk)
    assert row == {"actor_id": alice_id, "actor_username": "alice"}
