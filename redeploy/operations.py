"""What every granted action's operation shares: its audit events, failing a target, giving up
before the start, and concluding once every target finished (the grant settled USED when a
change was applied, given back when none was, the ticket's people told).

Each function writes its audit events in the transaction of the change it records.
"""

from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, override

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action, Outcome, build_event, record_events
from tickets.grant_services import give_back_grant, use_grant
from tickets.grants import GrantKind
from tickets.notifications import notify_operation_finished

from .models import RedeployOperation, RedeployTarget
from .providers import REDEPLOY_GRANTS, REDEPLOY_RECORD_HEADERS

OperationState = RedeployOperation.State
TargetState = RedeployTarget.State

RECORD_HEADERS = [*REDEPLOY_RECORD_HEADERS, "Result"]


def rollout_poll_seconds() -> float:
    """Seconds between two looks at a rollout (REDEPLOY_ROLLOUT_POLL_SECONDS, default 2)."""
    return settings.REDEPLOY_ROLLOUT_POLL_SECONDS


def rollout_deadline(progress_deadline_seconds: int):
    # A little beyond the Deployment's own deadline, so the controller's verdict comes first.
    grace = 2 * rollout_poll_seconds()
    return timezone.now() + timedelta(seconds=progress_deadline_seconds + grace)


def operation_event(
    operation: RedeployOperation,
    *,
    action: str,
    outcome: str,
    message: str,
    task_id: str = "",
    **where,
) -> AuditEvent:
    """An audit event of the operation (for record_events); `where` narrows it to a target."""
    return build_event(
        action=action,
        actor=operation.requested_by,
        outcome=outcome,
        ticket=operation.ticket,
        operation_id=operation.pk,
        application_name=operation.application_name,
        message=message,
        celery_task_id=task_id or operation.celery_task_id,
        **{
            "cluster_name": operation.cluster_name,
            "namespace": operation.namespace,
            "deployment_name": operation.deployment_name,
            **where,
        },
    )


def target_event(
    target: RedeployTarget, *, action: str, outcome: str, message: str, task_id: str
) -> AuditEvent:
    return operation_event(
        target.operation,
        action=action,
        outcome=outcome,
        message=message,
        task_id=task_id,
        cluster_name=target.cluster_name,
        namespace=target.namespace,
        deployment_name=target.deployment_name,
        generation=target.generation,
        resource_version=target.resource_version,
    )


def locked_operation(operation_id, *, model=RedeployOperation):
    """The operation (of either granted action: `model`) locked, with what its events name."""
    return (
        model.objects.select_for_update(of=("self",))
        .select_related("requested_by", "ticket")
        .get(pk=operation_id)
    )


def locked_target(target_id: int, *, model=RedeployTarget):
    """The target (of either granted action: `model`) locked, with its operation's people."""
    return (
        model.objects.select_for_update(of=("self",))
        .select_related("operation__requested_by", "operation__ticket")
        .get(pk=target_id)
    )


def fail_target(
    target_id: int, *, message: str, task_id: str, keep_change: bool, claim: str = ""
) -> None:
    """The target failed. `keep_change`: its change was (or may have been) applied. Else none
    was applied under `claim`, the restartedAt this run claimed ("" for none): a target another
    run claimed meanwhile is left to that run. Concludes the operation when it was the last."""
    with transaction.atomic():
        target = locked_target(target_id)
        if target.is_finished or (not keep_change and target.restarted_at != claim):
            return
        now = timezone.now()
        target.state = TargetState.FAILED
        target.success = False
        target.message = message
        target.operated_at = target.operated_at or now
        target.finished_at = now
        if not keep_change:
            target.restarted_at = ""
        target.save()
        record_events(
            target_event(
                target,
                action=Action.REDEPLOY_FAILED,
                outcome=Outcome.FAILURE,
                message=message,
                task_id=task_id,
            )
        )
        conclude(operation_id=target.operation_id, task_id=task_id)


def give_up(*, operation_id, message: str, task_id: str = "") -> None:
    """The redeploy could not start (the broker down, or the task's last try found the
    database or Redis away): see fail_queued."""
    with transaction.atomic():
        fail_queued(
            locked_operation(operation_id),
            kind=REDEPLOY_GRANTS,
            action=Action.REDEPLOY_FAILED,
            message=message,
            task_id=task_id,
        )


def fail_queued(operation, *, kind: GrantKind, action: str, message: str, task_id: str) -> None:
    """Any granted action's operation, locked by the caller, that could not start: one still
    QUEUED fails with the reason and gives its grant back. One that started is left to its
    targets. (Every action's operation states share their values, so RedeployOperation's
    names serve.)"""
    if operation.state != OperationState.QUEUED:
        return
    operation.state = OperationState.FAILED
    operation.message = message
    operation.finished_at = timezone.now()
    operation.save(update_fields=["state", "message", "finished_at"])
    record_events(
        operation_event(
            operation, action=action, outcome=Outcome.FAILURE, message=message, task_id=task_id
        )
    )
    give_back(operation, kind=kind, task_id=task_id)


def give_back(operation, *, kind: GrantKind, task_id: str) -> None:
    """Any granted action's operation applied nothing: its grant goes back (tickets audits it
    with the operation's names)."""
    give_back_grant(
        kind=kind,
        operation_id=operation.pk,
        ticket_id=operation.ticket_id,
        application_name=operation.application_name,
        user=operation.requested_by,
        cluster_name=operation.cluster_name,
        namespace=operation.namespace,
        deployment_name=operation.deployment_name,
        celery_task_id=task_id or operation.celery_task_id,
    )


def _summary(targets: list[RedeployTarget]) -> str:
    if len(targets) == 1:
        return targets[0].message
    return "\n".join(f"{target.cluster_name}: {target.message}" for target in targets)


def conclude(*, operation_id, task_id: str) -> None:
    """Close the operation once every target is finished (the caller may hold a target lock).

    One approval, one operation: once any change was applied the grant is used (its entry
    settled USED with the overall result); when none was, it goes back for the rest of its
    lifetime. The ticket's people are told once the verdict is committed.
    """
    # No savepoint inside a caller's transaction (nothing here is undone alone): two round
    # trips less before the verdict commits.
    with transaction.atomic(savepoint=False):
        operation = locked_operation(operation_id)
        targets = list(operation.targets.order_by("cluster_name", "pk"))
        if operation.is_finished or not targets or not all(t.is_finished for t in targets):
            return
        succeeded = all(target.state == TargetState.SUCCEEDED for target in targets)
        operation.state = OperationState.SUCCEEDED if succeeded else OperationState.FAILED
        operation.message = _summary(targets)
        operation.finished_at = timezone.now()
        operation.save()
        settle_grant(
            operation,
            kind=REDEPLOY_GRANTS,
            applied=any(target.restarted_at for target in targets),
            succeeded=succeeded,
            task_id=task_id,
        )
        transaction.on_commit(partial(notify_finished, operation=operation))


def settle_grant(
    operation, *, kind: GrantKind, applied: bool, succeeded: bool, task_id: str
) -> None:
    """Any granted action's finished operation, in its transaction: one approval, one
    operation, so once its change was (or may have been) applied the grant is used, its entry
    settled USED with `succeeded`; when nothing was, the grant goes back."""
    if applied:
        use_grant(
            kind=kind,
            operation_id=operation.pk,
            ticket_id=operation.ticket_id,
            application_name=operation.application_name,
            actor=operation.requested_by,
            success=succeeded,
        )
    else:
        give_back(operation, kind=kind, task_id=task_id)


def notify_finished(*, operation: RedeployOperation) -> None:
    """Tell the applicant and the approvers of the operation's ticket how it ended."""
    if operation.ticket_id is None:
        return
    targets = list(operation.targets.order_by("cluster_name", "pk"))
    notify_operation_finished(ticket_id=operation.ticket_id, report=_report(operation, targets))


def record_row(target: RedeployTarget) -> list[str]:
    """The target as a row of the seed's second table (RECORD_HEADERS)."""
    return [target.cluster_name, target.namespace, target.deployment_name, *time_and_result(target)]


def time_and_result(target) -> list[str]:
    """Any granted action's target: the last two cells of its records row (when it was
    operated, how it ended)."""
    operated = f"{target.operated_at:%Y-%m-%d %H:%M:%S}" if target.operated_at else "-"
    if target.success is None:
        result = _("In progress")
    else:
        result = _("Succeeded") if target.success else _("Failed")
    if target.message:
        result = f"{result}: {target.message}"
    return [operated, result]


def _report(operation: RedeployOperation, targets: list[RedeployTarget]) -> dict:
    """The finished notice, written in the site's language (tickets.notifications sends it)."""
    succeeded = operation.state == OperationState.SUCCEEDED
    names = {
        "application": operation.application_name,
        "where": f"{operation.namespace}/{operation.deployment_name}",
        "no": operation.ticket.ticket_no,
        "message": operation.message,
    }
    if succeeded:
        subject = gettext_noop("Redeploy of %(application)s succeeded")
        summary = gettext_noop(
            "The redeploy of %(application)s (%(where)s, ticket %(no)s) succeeded."
        )
    else:
        subject = gettext_noop("Redeploy of %(application)s failed")
        summary = gettext_noop(
            "The redeploy of %(application)s (%(where)s, ticket %(no)s) failed: %(message)s"
        )
    with override(settings.LANGUAGE_CODE):
        rows = [record_row(target) for target in targets]
        title = _("Redeploys")
    return {
        "event": "redeploy.finished",
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
                    "namespace": target.namespace,
                    "deploymentName": target.deployment_name,
                    "operatedAt": target.operated_at.isoformat() if target.operated_at else None,
                    "success": target.success,
                    "message": target.message,
                }
                for target in targets
            ],
        },
    }


def operation_fields(operation, *, succeeded: bool) -> dict:
    """Any granted action's operation in a finished notice's webhook fields."""
    return {
        "operationId": str(operation.pk),
        "operationState": operation.state,
        "success": succeeded,
        "message": operation.message,
        "application": operation.application_name,
        "namespace": operation.namespace,
        "deploymentName": operation.deployment_name,
    }
