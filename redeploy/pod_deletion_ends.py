"""How a pod deletion ends: a target failed or succeeded, giving up before the start, and
concluding once every target finished (the grant used when a DELETE was applied, given back
when none was, the ticket's people told). The audit events are built as a redeploy's
(redeploy.operations.operation_event), each written in the transaction of its change."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, override

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action, Outcome, record_events
from tickets.notifications import notify_operation_finished

from .models import PodDeletion, PodDeletionTarget
from .operations import (
    fail_queued,
    locked_target,
    operation_event,
    operation_fields,
    settle_grant,
    time_and_result,
)
from .operations import locked_operation as locked_any_operation
from .providers import DELETE_POD_GRANTS, POD_DELETION_RECORD_HEADERS

OperationState = PodDeletion.State
TargetState = PodDeletionTarget.State

RECORD_HEADERS = [*POD_DELETION_RECORD_HEADERS, "Result"]


def target_event(
    target: PodDeletionTarget, *, action: str, outcome: str, message: str, task_id: str
) -> AuditEvent:
    """The target's audit event; the audit log has no pod column, so the message names it."""
    return operation_event(
        target.operation,
        action=action,
        outcome=outcome,
        message=f"pod={target.pod_name}: {message}",
        task_id=task_id,
        cluster_name=target.cluster_name,
        namespace=target.namespace,
        deployment_name=target.deployment_name,
    )


def locked_operation(operation_id) -> PodDeletion:
    return locked_any_operation(operation_id, model=PodDeletion)


def finish_target(
    target_id: int, *, success: bool, message: str, task_id: str, keep_change: bool = True
) -> None:
    """The target ended. `keep_change=False`: its DELETE was not applied (the claim is
    dropped). Concludes the operation when it was the last."""
    with transaction.atomic():
        target = locked_target(target_id, model=PodDeletionTarget)
        if target.is_finished:
            return
        now = timezone.now()
        target.state = TargetState.SUCCEEDED if success else TargetState.FAILED
        target.success = success
        target.message = message
        target.operated_at = target.operated_at or now
        target.finished_at = now
        target.deleted = target.deleted and keep_change
        target.save()
        record_events(
            target_event(
                target,
                action=Action.POD_DELETION_SUCCEEDED if success else Action.POD_DELETION_FAILED,
                outcome=Outcome.SUCCESS if success else Outcome.FAILURE,
                message=message,
                task_id=task_id,
            )
        )
        conclude(operation_id=target.operation_id, task_id=task_id)


def fail_target(target_id: int, *, message: str, task_id: str, keep_change: bool = True) -> None:
    finish_target(
        target_id, success=False, message=message, task_id=task_id, keep_change=keep_change
    )


def give_up(*, operation_id, message: str, task_id: str = "") -> None:
    """The deletion could not start (broker down, or the task's last try found the database
    or Redis away): see redeploy.operations.fail_queued."""
    with transaction.atomic():
        fail_queued(
            locked_operation(operation_id),
            kind=DELETE_POD_GRANTS,
            action=Action.POD_DELETION_FAILED,
            message=message,
            task_id=task_id,
        )


def conclude(*, operation_id, task_id: str) -> None:
    """Close the operation once every target finished: one approval, one operation, so once
    any DELETE was applied the grant is used; when none was, it goes back. The ticket's people
    are told once it is committed."""
    # No savepoint inside a caller's transaction, as redeploy.operations.conclude.
    with transaction.atomic(savepoint=False):
        operation = locked_operation(operation_id)
        targets = list(operation.targets.order_by("pk"))
        if operation.is_finished or not targets or not all(t.is_finished for t in targets):
            return
        succeeded = all(target.state == TargetState.SUCCEEDED for target in targets)
        operation.state = OperationState.SUCCEEDED if succeeded else OperationState.FAILED
        operation.message = "\n".join(f"{t.pod_name}: {t.message}" for t in targets)
        operation.finished_at = timezone.now()
        operation.save()
        settle_grant(
            operation,
            kind=DELETE_POD_GRANTS,
            applied=any(target.deleted for target in targets),
            succeeded=succeeded,
            task_id=task_id,
        )
        if operation.ticket_id is not None:
            transaction.on_commit(
                lambda: notify_operation_finished(
                    ticket_id=operation.ticket_id, report=_report(operation, targets)
                )
            )


def record_row(target: PodDeletionTarget) -> list[str]:
    """The target as a row of the ticket's records table (RECORD_HEADERS)."""
    where = [target.cluster_name, target.namespace, target.deployment_name, target.pod_name]
    return [*where, *time_and_result(target)]


def _report(operation: PodDeletion, targets: list[PodDeletionTarget]) -> dict:
    """The finished notice, in the site's language (tickets.notifications sends it)."""
    succeeded = operation.state == OperationState.SUCCEEDED
    names = {
        "application": operation.application_name,
        "where": f"{operation.namespace}/{operation.deployment_name}",
        "no": operation.ticket.ticket_no,
        "message": operation.message,
    }
    if succeeded:
        subject = gettext_noop("Pod deletion of %(application)s succeeded")
        summary = gettext_noop(
            "The pod deletion of %(application)s (%(where)s, ticket %(no)s) succeeded."
        )
    else:
        subject = gettext_noop("Pod deletion of %(application)s failed")
        summary = gettext_noop(
            "The pod deletion of %(application)s (%(where)s, ticket %(no)s) failed: %(message)s"
        )
    with override(settings.LANGUAGE_CODE):
        rows = [record_row(target) for target in targets]
        title = _("Pod deletions")
    return {
        "event": "pod_deletion.finished",
        "title": title,
        # Untranslated: each recipient reads them in their own language.
        "words": {"subject": subject, "summary": summary, "names": names},
        "headers": RECORD_HEADERS,
        "rows": rows,
        "fields": {
            **operation_fields(operation, succeeded=succeeded),
            "targets": [
                {
                    "cluster": target.cluster_name,
                    "podName": target.pod_name,
                    "operatedAt": target.operated_at.isoformat() if target.operated_at else None,
                    "success": target.success,
                    "message": target.message,
                }
                for target in targets
            ],
        },
    }
