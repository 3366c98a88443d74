"""Writing audit events. Services call `record_event` (or `record_events` for several at once,
one INSERT) inside the transaction of the change."""

from collections.abc import Sequence

from django.db import transaction

from . import sql
from .models import AuditEvent

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome


def build_event(
    *,
    action: str,
    actor=None,
    outcome: str = Outcome.SUCCESS,
    ticket=None,
    operation=None,
    application_name: str = "",
    cluster_name: str = "",
    namespace: str = "",
    deployment_name: str = "",
    message: str = "",
    generation: int | None = None,
    resource_version: str = "",
    request_ip: str | None = None,
    celery_task_id: str = "",
) -> AuditEvent:
    """An audit event, not yet written: give it to record_events."""
    return AuditEvent(
        action=action,
        actor=actor if actor is not None and actor.pk else None,
        actor_username=actor.get_username() if actor is not None else "",
        outcome=outcome,
        ticket=ticket,
        ticket_no=(ticket.ticket_no or "") if ticket is not None else "",
        operation=operation,
        application_name=application_name,
        cluster_name=cluster_name,
        namespace=namespace,
        deployment_name=deployment_name,
        message=message,
        generation=generation,
        resource_version=resource_version or "",
        request_ip=request_ip,
        celery_task_id=celery_task_id or "",
    )


def record_events(*events: AuditEvent, along: Sequence[sql.Statement] = ()) -> list[AuditEvent]:
    """Write the events; `along`: the change's own statements, written first and sent with the
    events (one round trip where the database allows)."""
    # A caller outside a transaction would let the change land without its record (or the
    # reverse); refuse loudly so that mistake shows in tests, not in an incident review.
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit events must be recorded inside the transaction of the change")
    # Written out (redeploy.sql): the ORM's compiling of the INSERT costs more than the INSERT.
    sql.run([*along, *sql.insert(events)])
    return list(events)


def record_event(**fields) -> AuditEvent:
    """One audit event (the fields of build_event), written now."""
    (event,) = record_events(build_event(**fields))
    return event
