"""The one recorder of the audit log. Services call `record_event` (or `record_events` for
several at once, one INSERT) inside the transaction of the change they record."""

from django.db import transaction
from django.utils import translation

from .models import AuditEvent

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome


def build_event(
    *,
    action: str,
    actor=None,
    actor_username: str = "",
    outcome: str = Outcome.SUCCESS,
    ticket=None,
    operation_id=None,
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
    """An audit event, not yet written: give it to record_events. `ticket` is anything with a
    `pk` and a `ticket_no`: the log keeps its id and number (and an operation's id), so it reads
    the same after they change. `actor_username` names an actor who is no user (a user name
    tried at sign-in)."""
    # The log is a record: a refusal's lazy message is kept in English whatever the actor reads.
    with translation.override("en"):
        message = str(message)
    return AuditEvent(
        action=action,
        actor=actor if actor is not None and actor.pk else None,
        actor_username=actor.get_username() if actor is not None else actor_username,
        outcome=outcome,
        ticket_id=ticket.pk if ticket is not None else None,
        ticket_no=(ticket.ticket_no or "") if ticket is not None else "",
        operation_id=operation_id,
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


def record_events(*events: AuditEvent) -> list[AuditEvent]:
    """Write the events, in one INSERT."""
    # A caller outside a transaction would let the change land without its record (or the
    # reverse); refuse loudly so that mistake shows in tests, not in an incident review.
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit events must be recorded inside the transaction of the change")
    return AuditEvent.objects.bulk_create(events)


def record_event(**fields) -> AuditEvent:
    """One audit event (the fields of build_event), written now."""
    (event,) = record_events(build_event(**fields))
    return event
