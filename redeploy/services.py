"""Redeploy writes: request a redeploy, run it (the authoritative check and the restart), follow
its rollout; register clusters (from kubeconfigs, or the one the product runs in) and
applications from Deployments.

Each function writes its audit events in the transaction of the change. Kubernetes calls happen
through redeploy.kube only, never waited for while a row lock is held: a redeploy's reads go out
while its first transaction writes, and are looked at once it committed.
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action, Outcome, build_event, record_event, record_events
from cratos.exceptions import DomainError, NotFound, ServiceUnavailable, ValidationFailed
from tickets.models import Ticket, TicketEntry
from tickets.notifications import notify_redeploy_finished
from tickets.services import settle_entry

from . import authorization, kube, sql
from .exceptions import (
    DEPLOYMENT_DOES_NOT_EXIST,
    UNAUTHORIZED_ACCESS,
    DeploymentNotFound,
    KubeError,
    KubeTransientError,
    RestartInDoubt,
    UnauthorizedAccess,
    binding_missing_message,
    operation_failed_message,
)
from .models import (
    Application,
    DeploymentBinding,
    KubernetesCluster,
    RedeployOperation,
    RedeployTarget,
)
from .rules import redeploy_refusal
from .validators import validate_dns1123_label, validate_dns1123_subdomain

logger = logging.getLogger(__name__)

DEFAULT_APPLICATION_LABEL = "app.kubernetes.io/name"
# Publishing the task: a short, bounded retry, so a broker outage answers the user at once.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
QUEUE_DOWN = (
    "The task queue is not answering; the redeploy was not started and your authorization is "
    "untouched. Try again in a moment."
)

OperationState = RedeployOperation.State
TargetState = RedeployTarget.State


def rollout_poll_seconds() -> float:
    """Seconds between two looks at a rollout (REDEPLOY_ROLLOUT_POLL_SECONDS, default 2)."""
    return settings.REDEPLOY_ROLLOUT_POLL_SECONDS


# -- request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedeployRequest:
    """What to restart: the Deployment of an application, in one cluster or in all of them."""

    application_name: str
    namespace: str
    deployment_name: str
    cluster_name: str | None = None


def _clean_request(item: RedeployRequest) -> RedeployRequest:
    application_name = (item.application_name or "").strip()
    namespace = (item.namespace or "").strip()
    deployment_name = (item.deployment_name or "").strip()
    missing = [
        label
        for label, value in (
            ("application name", application_name),
            ("namespace", namespace),
            ("deployment name", deployment_name),
        )
        if not value
    ]
    if missing:
        raise ValidationFailed(f"Give the {', '.join(missing)}.")
    try:
        validate_dns1123_label(namespace)
        validate_dns1123_subdomain(deployment_name)
    except ValidationError as error:
        raise ValidationFailed(error.messages[0]) from None
    return RedeployRequest(
        application_name=application_name,
        namespace=namespace,
        deployment_name=deployment_name,
        cluster_name=(item.cluster_name or "").strip(),
    )


def _clean_batch(items: Sequence[RedeployRequest]) -> list[RedeployRequest]:
    """The requests cleaned; in a batch each message names the request it is about."""
    if not items:
        raise ValidationFailed("Give at least one redeploy.")
    most = settings.REDEPLOY_MAX_BATCH
    if len(items) > most:
        raise ValidationFailed(f"At most {most} redeploys can be requested at once.")
    if len(items) == 1:
        return [_clean_request(items[0])]
    cleaned = []
    for number, item in enumerate(items, start=1):
        try:
            cleaned.append(_clean_request(item))
        except ValidationFailed as error:
            raise ValidationFailed(f"Redeploy {number}: {error.message}") from None
    seen = set()
    for item in cleaned:
        if item.application_name in seen:
            # The second would find the authorization used by the first.
            raise ValidationFailed(
                f"Application {item.application_name} is named twice; one approval allows "
                "one redeploy."
            )
        seen.add(item.application_name)
    return cleaned


def _refusals(*, user, items: list[RedeployRequest]) -> list[DomainError | None]:
    """The fast check of each request: the permission, and a live authorization."""
    refusal = redeploy_refusal(user=user)
    if refusal is not None:
        return [refusal] * len(items)
    try:
        live = authorization.live_tokens(
            username=user.get_username(),
            application_names=[item.application_name for item in items],
        )
    except ServiceUnavailable as unavailable:
        return [unavailable] * len(items)
    authorized = {token.application_name for token in live}
    return [None if item.application_name in authorized else UnauthorizedAccess() for item in items]


def _where(item: RedeployRequest) -> dict:
    return {
        "application_name": item.application_name,
        "cluster_name": item.cluster_name,
        "namespace": item.namespace,
        "deployment_name": item.deployment_name,
    }


def request_redeploys(
    *, user, items: Sequence[RedeployRequest], request_ip: str | None = None
) -> list[RedeployOperation]:
    """Queue redeploys for a user holding a live authorization for each application: one
    operation per request, all run by one task (a batch restarts its Deployments side by side).

    The fast check here; the authoritative one (consuming each authorization) once the task is
    queued, see _enqueue. All or nothing: when any request is refused none is queued, each
    refusal is audited in its own committed transaction and the first is raised (in a batch its
    message names the applications), so call this outside any transaction (as views do).
    Without a cluster every cluster where the binding exists is restarted, each as a target of
    the operation. The task is queued once the operations are committed; a broker that does not
    answer fails them and raises ServiceUnavailable, the authorizations untouched.
    Raises PermissionRefused, UnauthorizedAccess, ValidationFailed, ServiceUnavailable.
    """
    items = _clean_batch(items)
    refusals = _refusals(user=user, items=items)
    refused = [error for error in refusals if error is not None]
    if refused:
        first = refused[0]
        audited = list(zip(items, refusals, strict=True))
        if len(items) > 1 and all(error is first for error in refusals):
            # The whole request refused (no permission, Redis away): one event, however long.
            refusal = type(first)(f"{first.message} ({len(items)} redeploys requested)")
            audited = [(items[0], refusal)]
        with transaction.atomic():
            record_events(
                *[
                    build_event(
                        action=Action.REDEPLOY_REFUSED,
                        actor=user,
                        outcome=Outcome.FAILURE,
                        message=error.message if error else f"Not queued: {first.message}",
                        request_ip=request_ip,
                        **_where(item),
                    )
                    for item, error in audited
                ]
            )
        if len(items) > 1 and isinstance(first, UnauthorizedAccess):
            names = ", ".join(
                item.application_name
                for item, error in zip(items, refusals, strict=True)
                if error is not None
            )
            raise UnauthorizedAccess(f"{UNAUTHORIZED_ACCESS} (no live authorization: {names})")
        raise first
    # One task for the batch, so every operation carries its id.
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        operations = RedeployOperation.objects.bulk_create(
            RedeployOperation(
                requested_by=user, request_ip=request_ip, celery_task_id=task_id, **_where(item)
            )
            for item in items
        )
        record_events(
            *[
                build_event(
                    action=Action.REDEPLOY_REQUESTED,
                    actor=user,
                    outcome=Outcome.INFO,
                    operation=operation,
                    request_ip=request_ip,
                    celery_task_id=task_id,
                    **_where(item),
                )
                for operation, item in zip(operations, items, strict=True)
            ]
        )
        transaction.on_commit(lambda: _enqueue(operations=operations, task_id=task_id))
    return operations


def request_redeploy(
    *,
    user,
    application_name: str,
    namespace: str,
    deployment_name: str,
    cluster_name: str | None = None,
    request_ip: str | None = None,
) -> RedeployOperation:
    """Queue one redeploy (request_redeploys with one request)."""
    (operation,) = request_redeploys(
        user=user,
        items=[
            RedeployRequest(
                application_name=application_name,
                namespace=namespace,
                deployment_name=deployment_name,
                cluster_name=cluster_name,
            )
        ],
        request_ip=request_ip,
    )
    return operation


def _enqueue(*, operations: list[RedeployOperation], task_id: str) -> None:
    from .tasks import run_redeploys as run_redeploys_task  # the tasks module imports this one

    operation_ids = [str(operation.pk) for operation in operations]
    try:
        run_redeploys_task.apply_async(
            kwargs={"operation_ids": operation_ids},
            task_id=task_id,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except OperationalError as error:
        logger.error("Cannot queue redeploys %s: %s", ", ".join(operation_ids), error)
        for operation_id in operation_ids:
            give_up_redeploy(operation_id=operation_id, message=QUEUE_DOWN)
        raise ServiceUnavailable(QUEUE_DOWN) from error
    # Queued: the request starts the redeploys itself (takes the authorizations, writes the
    # targets), so the worker finds them started and goes straight to the restarts, and a loser
    # of a race on one authorization is failed before the answer. Whichever locks an operation
    # first starts it; with no row locks (SQLite) only the worker does. Should this fail or this
    # process die, the worker starts them (an authorization taken here stays held for it).
    if connection.features.has_select_for_update:
        try:
            _start(operation_ids=operation_ids, task_id=task_id)
        except Exception:
            # The redeploys are queued all the same: the worker starts them.
            logger.exception("Redeploys %s left for the worker to start", operation_ids)


def give_up_redeploy(*, operation_id, message: str, task_id: str = "") -> None:
    """The operation could not start (broker down, or the task's last try found Redis away):
    one that never started fails with the reason; its authorization was never taken. One that
    started is left to its targets."""
    with transaction.atomic():
        operation = _locked_operation(operation_id)
        if operation.state != OperationState.QUEUED:
            return
        operation.state = OperationState.FAILED
        operation.message = message
        operation.finished_at = timezone.now()
        operation.save(update_fields=["state", "message", "finished_at"])
        record_events(
            _operation_event(
                operation,
                action=Action.REDEPLOY_FAILED,
                outcome=Outcome.FAILURE,
                message=message,
                task_id=task_id,
            )
        )


# -- audit helpers -------------------------------------------------------------------------


def _operation_event(
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
        operation=operation,
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


def _target_event(
    target: RedeployTarget, *, action: str, outcome: str, message: str, task_id: str
) -> AuditEvent:
    return _operation_event(
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


# -- the task: consume, restart ------------------------------------------------------------


def _locked_operation(operation_id) -> RedeployOperation:
    return (
        RedeployOperation.objects.select_for_update(of=("self",))
        .select_related("requested_by", "ticket")
        .get(pk=operation_id)
    )


def _locked_target(target_id: int) -> RedeployTarget:
    return (
        RedeployTarget.objects.select_for_update(of=("self",))
        .select_related("operation__requested_by", "operation__ticket")
        .get(pk=target_id)
    )


@dataclass
class _Pending:
    """A target to restart, its cluster, and the check of its Deployment (is it paused?) going
    on in the background: a GET of it, or a LIST of its namespace shared with others."""

    target: RedeployTarget
    cluster: KubernetesCluster
    look: Future
    listed: bool = False  # the look is a LIST: {name: RestartCheck} of the namespace
    check: kube.RestartCheck | None = None  # once the look said it may be restarted

    @classmethod
    def looking(cls, targets: list[tuple[RedeployTarget, KubernetesCluster]]) -> list["_Pending"]:
        """Start the looks: one LIST for a namespace where a batch restarts many Deployments
        (KUBERNETES_LIST_FROM or more: cheaper for the API server than as many GETs), else
        one GET each."""
        by_namespace = defaultdict(list)
        for target, cluster in targets:
            by_namespace[(cluster.pk, target.namespace)].append((target, cluster))
        pending = []
        for (_, namespace), group in by_namespace.items():
            cluster = group[0][1]
            if len(group) >= settings.KUBERNETES_LIST_FROM:
                listing = kube.in_background(
                    kube.check_restarts_in, cluster=cluster, namespace=namespace
                )
                pending += [cls(t, c, listing, listed=True) for t, c in group]
                continue
            for target, cluster in group:
                look = kube.in_background(
                    kube.check_restart,
                    cluster=cluster,
                    namespace=target.namespace,
                    name=target.deployment_name,
                )
                pending.append(cls(target, cluster, look))
        return pending

    def refusal(self) -> str:
        """Waits for the look; why the Deployment must not be restarted, or "" (it may)."""
        try:
            check = self.look.result()
        except KubeError as error:
            return _failure_message(error)
        except Exception as error:
            # Unforeseen (a bug, the client): nothing was sent, so the target just fails.
            logger.exception("Reading the Deployment of target %s failed", self.target.pk)
            return operation_failed_message(str(error))
        if self.listed:
            check = check.get(self.target.deployment_name)
            if check is None:
                return DEPLOYMENT_DOES_NOT_EXIST
        if check.paused:
            return operation_failed_message(kube.PAUSED_MESSAGE)
        self.check = check
        return ""


def _operations_update(operations: list[RedeployOperation], fields: list[str]) -> list:
    """The statements saving these fields of the operations: one UPDATE per distinct set of
    values (a batch's operations share them, but for the ticket), cheaper than a bulk_update's
    CASEs."""
    groups = defaultdict(list)
    for operation in operations:
        values = tuple((field, getattr(operation, field)) for field in fields)
        groups[values].append(operation.pk)
    return [
        sql.update(RedeployOperation, pks=ids, values=dict(values))
        for values, ids in groups.items()
    ]


def _start(*, operation_ids: Sequence, task_id: str) -> None:
    """Steps 1-3 for the QUEUED operations among `operation_ids`, in one transaction: consume
    their authorizations (one round trip), find the bindings, create the targets.

    Only a QUEUED operation starts: of the request and the task (or a redelivered task), the
    first one to lock it; the others find it RUNNING or finished.
    """
    with transaction.atomic():
        locked = sql.lock_queued_operations(operation_ids)
        if not locked:
            return
        operations = [operation for operation, _ in locked]
        wanted = [
            (operation.requested_by.get_username(), operation.application_name, operation.pk)
            for operation in operations
        ]
        # Of many racing requests and tasks on one authorization exactly one gets it, held for
        # its operation: should this process die before the commit, the next run to start the
        # operation (the task, or its redelivery) finds it held.
        tokens = authorization.consume_all(wanted=wanted)
        try:
            _record_start(locked, tokens=tokens, task_id=task_id)
        except BaseException:
            # Put back while the operations are still locked: once the rollback frees them,
            # another run may take the held copies, and a put-back after that would let one
            # approval serve twice. A failed commit (at the end of the block) puts nothing
            # back: it may have landed, and the next run takes or drops the held copies.
            held = [item for item, token in zip(wanted, tokens, strict=True) if token is not None]
            try:
                authorization.put_back_all(wanted=held)
            except ServiceUnavailable:
                # Still held for their operations: the next runs take them there.
                logger.error("Could not put back the authorizations held for %s", held)
            raise


def _record_start(locked: list, *, tokens: list, task_id: str) -> None:
    """_start's writes: the operations RUNNING (FAILED without an authorization), their targets
    and the audit events, sent together."""
    bindings = {operation.pk: found for operation, found in locked}
    operations = [operation for operation, _ in locked]
    now = timezone.now()
    targets: list[RedeployTarget] = []
    events: list[AuditEvent] = []
    for operation, token in zip(operations, tokens, strict=True):
        operation.celery_task_id = task_id or operation.celery_task_id
        operation.started_at = now
        if token is None:
            operation.state = OperationState.FAILED
            operation.message = UNAUTHORIZED_ACCESS
            operation.finished_at = now
            events.append(
                _operation_event(
                    operation,
                    action=Action.REDEPLOY_FAILED,
                    outcome=Outcome.FAILURE,
                    message=UNAUTHORIZED_ACCESS,
                )
            )
            continue
        operation.state = OperationState.RUNNING
        operation.authorization_expires_at = token.expires
        # The authorization names its ticket: no need to read it.
        operation.ticket = Ticket(pk=token.ticket_id, ticket_no=token.ticket_no)
        found = bindings[operation.pk]
        events += [
            _operation_event(
                operation,
                action=Action.AUTHORIZATION_CONSUMED,
                outcome=Outcome.SUCCESS,
                message=f"Authorization of ticket {token.ticket_no} consumed "
                f"({token.seconds_left()} s were left)",
            ),
            _operation_event(
                operation,
                action=Action.REDEPLOY_STARTED,
                outcome=Outcome.INFO,
                message=f"Restarting {len(found)} Deployment(s)",
            ),
        ]
        if not found:
            missing = RedeployTarget(
                operation=operation,
                ticket_id=token.ticket_id,
                cluster_name=operation.cluster_name,
                namespace=operation.namespace,
                deployment_name=operation.deployment_name,
                state=TargetState.FAILED,
                success=False,
                message=binding_missing_message(operation.deployment_name),
                operated_at=now,
                finished_at=now,
            )
            targets.append(missing)
            events.append(
                _target_event(
                    missing,
                    action=Action.REDEPLOY_FAILED,
                    outcome=Outcome.FAILURE,
                    message=missing.message,
                    task_id=operation.celery_task_id,
                )
            )
        targets += [
            RedeployTarget(
                operation=operation,
                ticket_id=token.ticket_id,
                binding_id=binding.pk,
                cluster_name=binding.cluster.name,
                namespace=binding.namespace,
                deployment_name=binding.deployment_name,
            )
            for binding in found
        ]
    changes = _operations_update(
        operations,
        [
            "state",
            "message",
            "started_at",
            "finished_at",
            "celery_task_id",
            "authorization_expires_at",
            "ticket_id",
        ],
    )
    sql.run([*changes, *sql.insert(targets)])
    record_events(*events)


def _failure_message(error: KubeError) -> str:
    if isinstance(error, DeploymentNotFound):
        return DEPLOYMENT_DOES_NOT_EXIST
    return operation_failed_message(error.message)


def _fail_target(
    target_id: int, *, message: str, task_id: str, keep_restart: bool, claim: str = ""
) -> None:
    """The target failed. `keep_restart`: the restart was (or may have been) applied. Else no
    restart was applied under `claim`, the restartedAt this run claimed ("" for none): a target
    another run claimed meanwhile is left to that run."""
    with transaction.atomic():
        target = _locked_target(target_id)
        if target.is_finished or (not keep_restart and target.restarted_at != claim):
            return
        now = timezone.now()
        target.state = TargetState.FAILED
        target.success = False
        target.message = message
        target.operated_at = target.operated_at or now
        target.finished_at = now
        if not keep_restart:
            target.restarted_at = ""
        target.save()
        record_events(
            _target_event(
                target,
                action=Action.REDEPLOY_FAILED,
                outcome=Outcome.FAILURE,
                message=message,
                task_id=task_id,
            )
        )


def _deadline(progress_deadline_seconds: int):
    # A little beyond the Deployment's own deadline, so the controller's verdict comes first.
    grace = 2 * rollout_poll_seconds()
    return timezone.now() + timedelta(seconds=progress_deadline_seconds + grace)


@dataclass
class _Restarted:
    target_id: int
    restart: kube.Restart
    progress_deadline_seconds: int


ROLLING_FIELDS = [
    "state",
    "restarted_at",
    "generation",
    "resource_version",
    "operated_at",
    "progress_deadline_seconds",
    "deadline_at",
    "message",
]


def _record_restarts(restarted: list[_Restarted], *, task_id: str) -> None:
    """The applied restarts, in one transaction: their targets are ROLLING, one event each.

    The event is written in any case (the restart was applied); the target changes only while
    it still waits on this very claim, never after another run decided it."""
    if not restarted:
        return
    with transaction.atomic():
        targets = {
            target.pk: target
            for target in RedeployTarget.objects.select_for_update(of=("self",))
            .select_related("operation__requested_by", "operation__ticket")
            .filter(pk__in=[item.target_id for item in restarted])
            .order_by("pk")
        }
        now = timezone.now()
        events = []
        rolling = []
        for item in restarted:
            target, restart = targets[item.target_id], item.restart
            if target.state == TargetState.PENDING and target.restarted_at == restart.restarted_at:
                rolling.append(target)
            target.state = TargetState.ROLLING
            target.restarted_at = restart.restarted_at
            target.generation = restart.generation
            target.resource_version = restart.resource_version
            target.operated_at = now
            target.progress_deadline_seconds = item.progress_deadline_seconds
            target.deadline_at = _deadline(item.progress_deadline_seconds)
            target.message = f"Restarted (restartedAt {restart.restarted_at}); rolling out..."
            events.append(
                _target_event(
                    target,
                    action=Action.REDEPLOY_SUCCEEDED,
                    outcome=Outcome.SUCCESS,
                    message=f"Restart applied: restartedAt {restart.restarted_at}",
                    task_id=task_id,
                )
            )
        if rolling:
            RedeployTarget.objects.bulk_update(rolling, ROLLING_FIELDS)
        record_events(*events)


def _cluster_of(target: RedeployTarget) -> KubernetesCluster | None:
    return KubernetesCluster.objects.filter(name=target.cluster_name).first()


def _resume_restart(target: RedeployTarget, *, task_id: str) -> None:
    """A redelivered task met a target whose restart was claimed, perhaps sent: look, never
    PATCH again."""
    cluster = _cluster_of(target)
    if cluster is None:
        _fail_target(
            target.pk,
            message=binding_missing_message(target.deployment_name),
            task_id=task_id,
            keep_restart=True,
        )
        return
    try:
        deployment = kube.get_deployment(
            cluster=cluster, namespace=target.namespace, name=target.deployment_name
        )
    except KubeError as error:
        _fail_target(
            target.pk,
            message=operation_failed_message(
                f"{error.message} (the restart may have been applied; it was not repeated)"
            ),
            task_id=task_id,
            keep_restart=True,
        )
        return
    if kube.restarted_at_of(deployment) != target.restarted_at:
        _fail_target(
            target.pk,
            message=operation_failed_message(
                f"the restart (restartedAt {target.restarted_at}) was interrupted and is not "
                "visible on the Deployment; it was not repeated"
            ),
            task_id=task_id,
            keep_restart=True,
        )
        return
    _record_restarts(
        [
            _Restarted(
                target_id=target.pk,
                restart=kube.Restart(
                    restarted_at=target.restarted_at,
                    generation=deployment.metadata.generation,
                    resource_version=deployment.metadata.resource_version or "",
                ),
                progress_deadline_seconds=kube.progress_deadline_seconds(deployment),
            )
        ],
        task_id=task_id,
    )


def _restart(pending: list[_Pending], *, task_id: str) -> None:
    """Steps 4-5: refuse a paused Deployment like kubectl, claim the restarts of the others and
    send them side by side, and record the restarts in one transaction.

    The claim (restartedAt fixed, committed before the PATCH) comes after the check: a worker
    killed before it leaves the target to be restarted by the redelivered task, one killed
    after it leaves a restart perhaps sent, never sent again."""
    ready = []
    for item in pending:
        if failure := item.refusal():
            _fail_target(item.target.pk, message=failure, task_id=task_id, keep_restart=False)
        else:
            ready.append(item)
    claimed = []
    if ready:
        restarted_at = kube.now_restarted_at()
        won = sql.claim_restarts([item.target.pk for item in ready], restarted_at=restarted_at)
        for item in ready:
            if item.target.pk in won:  # not claimed by a concurrent run of the same task
                item.target.restarted_at = restarted_at
                claimed.append(item)
    patches = [
        (
            item,
            kube.in_background(
                kube.restart_deployment,
                cluster=item.cluster,
                namespace=item.target.namespace,
                name=item.target.deployment_name,
                restarted_at=item.target.restarted_at,
            ),
        )
        for item in claimed
    ]
    restarted = []
    try:
        for item, patch in patches:
            target = item.target
            try:
                restart = patch.result()
            except KubeError as error:
                in_doubt = isinstance(error, RestartInDoubt)
                _fail_target(
                    target.pk,
                    message=operation_failed_message(error.message)
                    if in_doubt
                    else _failure_message(error),
                    task_id=task_id,
                    keep_restart=in_doubt,
                    claim=target.restarted_at,
                )
                continue
            except Exception as error:
                # Unforeseen (a bug, the client): the PATCH may have gone out; never repeated.
                logger.exception("Restart of target %s ended unexpectedly", target.pk)
                _fail_target(
                    target.pk,
                    message=operation_failed_message(
                        f"{error} (the restart may have been applied; it was not repeated)"
                    ),
                    task_id=task_id,
                    keep_restart=True,
                )
                continue
            restarted.append(
                _Restarted(
                    target_id=target.pk,
                    restart=restart,
                    progress_deadline_seconds=item.check.progress_deadline_seconds,
                )
            )
    finally:
        # Whatever stopped the loop, the restarts already applied are recorded.
        _record_restarts(restarted, task_id=task_id)


def _resume(operation_ids: Sequence, *, started: list[_Pending], task_id: str) -> None:
    """The targets of the RUNNING operations that this run did not restart: claimed by a run
    killed since (looked at, never restarted again), or of a cluster removed meanwhile."""
    for target in (
        RedeployTarget.objects.select_related("operation__requested_by", "operation__ticket")
        .filter(
            operation_id__in=operation_ids,
            operation__state=OperationState.RUNNING,
            state=TargetState.PENDING,
        )
        .exclude(pk__in=[item.target.pk for item in started])
        .order_by("pk")
    ):
        run_id = task_id or target.operation.celery_task_id
        if target.restarted_at:
            _resume_restart(target, task_id=run_id)
        else:
            _fail_target(
                target.pk,
                message=binding_missing_message(target.deployment_name),
                task_id=run_id,
                keep_restart=False,
            )


def _summary(targets: list[RedeployTarget]) -> str:
    if len(targets) == 1:
        return targets[0].message
    return "\n".join(f"{target.cluster_name}: {target.message}" for target in targets)


def _restore(operation: RedeployOperation, *, task_id: str) -> None:
    # Under the ticket's lock (the order settle_entry and revocation take it): a revocation
    # or expiry that landed while the token was out of Redis must not be undone here.
    Ticket.objects.select_for_update().filter(pk=operation.ticket_id).first()
    entry = TicketEntry.objects.filter(
        ticket_id=operation.ticket_id, name=operation.application_name
    ).first()
    if entry is None or entry.state != TicketEntry.State.AUTHORIZED:
        record_events(
            _operation_event(
                operation,
                action=Action.AUTHORIZATION_RESTORED,
                outcome=Outcome.FAILURE,
                message="No restart was applied; the authorization was not put back because "
                f"it was {entry.state.lower() if entry else 'removed'} meanwhile",
                task_id=task_id,
            )
        )
        return
    token = authorization.RedeployToken(
        username=operation.requested_by.get_username(),
        application_name=operation.application_name,
        ticket_id=operation.ticket_id,
        ticket_no=operation.ticket.ticket_no,
        expires=operation.authorization_expires_at,
    )
    # Idempotent (SET NX with the remaining TTL), so a retried conclusion is harmless.
    restored = authorization.restore(token=token)
    if restored:
        message = f"No restart was applied; authorization put back ({token.seconds_left()} s left)"
    else:
        message = "No restart was applied, but the authorization expired meanwhile or was replaced"
    record_events(
        _operation_event(
            operation,
            action=Action.AUTHORIZATION_RESTORED,
            outcome=Outcome.SUCCESS if restored else Outcome.FAILURE,
            message=message,
            task_id=task_id,
        )
    )


def _settle(operation: RedeployOperation, *, success: bool) -> None:
    entry = TicketEntry.objects.filter(
        ticket_id=operation.ticket_id, name=operation.application_name
    ).first()
    # Revoked or expired meanwhile: the entry is settled already and keeps that verdict.
    if entry is not None and entry.state == TicketEntry.State.AUTHORIZED:
        settle_entry(
            entry=entry,
            state=TicketEntry.State.USED,
            actor=operation.requested_by,
            success=success,
        )


def _conclude(*, operation_id, task_id: str) -> None:
    """Close the operation once every target is finished (caller may hold a target lock).

    One approval, one redeploy: once any restart was applied the ticket entry is settled USED
    with the overall result; when none was, the authorization goes back with its remaining TTL.
    """
    with transaction.atomic():
        operation = _locked_operation(operation_id)
        targets = list(operation.targets.order_by("cluster_name", "pk"))
        if operation.is_finished or not targets or not all(t.is_finished for t in targets):
            return
        succeeded = all(target.state == TargetState.SUCCEEDED for target in targets)
        operation.state = OperationState.SUCCEEDED if succeeded else OperationState.FAILED
        operation.message = _summary(targets)
        operation.finished_at = timezone.now()
        operation.save()
        notify_redeploy_finished(operation=operation)
        if any(target.restarted_at for target in targets):
            _settle(operation, success=succeeded)
        else:
            _restore(operation, task_id=task_id)


def run_redeploys(*, operation_ids: Sequence, task_id: str = "") -> list[RedeployOperation]:
    """The task's work (steps 1-5) for a batch of operations (often one): start those the
    request did not (consume, find the bindings, write the targets), then check, claim and
    restart every target not yet claimed.

    Safe to run twice: only a QUEUED operation consumes and starts; a redelivered RUNNING one
    looks at its claimed targets and never sends a second restart.
    Returns the operations with their targets; ROLLING ones are to be followed (check_rollouts).
    """
    _start(operation_ids=operation_ids, task_id=task_id)
    # Every target no run has claimed yet: this run's, the request's, or a killed run's.
    started = _Pending.looking(sql.unclaimed_targets(operation_ids))
    _restart(started, task_id=task_id)
    try:
        # The consumptions are committed: the copies held for a killed run are not needed.
        authorization.release_all(operation_ids=list(operation_ids))
    except ServiceUnavailable:
        logger.warning("Held authorization copies of %s left to expire", operation_ids)
    _resume(operation_ids, started=started, task_id=task_id)
    # Those whose every target finished (failed) here; the others end with their rollouts.
    for operation in (
        RedeployOperation.objects.filter(pk__in=operation_ids, state=OperationState.RUNNING)
        .exclude(targets__state__in=[TargetState.PENDING, TargetState.ROLLING])
        .only("pk", "celery_task_id")
    ):
        _conclude(operation_id=operation.pk, task_id=task_id or operation.celery_task_id)
    return list(
        RedeployOperation.objects.select_related("requested_by", "ticket")
        .prefetch_related("targets")
        .filter(pk__in=operation_ids)
        .order_by("created_at", "pk")
    )


# -- following the rollout -------------------------------------------------------------------


@dataclass
class _Look:
    """What one look at a rollout found: its status, or why there is none."""

    status: kube.RolloutStatus | None = None
    failure: str = ""  # the target fails
    trouble: str = ""  # a transient error: look again later


def _look_at(target: RedeployTarget, deployment: Future | None) -> _Look:
    if deployment is None:
        return _Look(failure=binding_missing_message(target.deployment_name))
    try:
        return _Look(status=kube.rollout_status(deployment.result()))
    except KubeTransientError as error:
        return _Look(trouble=error.message)
    except KubeError as error:
        return _Look(failure=_failure_message(error))
    except Exception as error:
        # Unforeseen: looked at again later, until the progress deadline decides.
        logger.exception("Looking at the rollout of target %s failed", target.pk)
        return _Look(trouble=str(error))


def check_rollouts(*, target_ids: Sequence[int], task_id: str = "") -> dict[int, float]:
    """One non-blocking look at each target's rollout (step 6), the Deployments read side by
    side.

    Returns, for the targets still rolling, the seconds after which to look again; the others
    are finished: kubectl would call the rollout complete or failed, or its progress deadline
    passed. Transient API errors only postpone the verdict (until the deadline).
    """
    targets = list(
        RedeployTarget.objects.filter(pk__in=target_ids, state=TargetState.ROLLING).order_by("pk")
    )
    clusters = KubernetesCluster.objects.in_bulk(
        {target.cluster_name for target in targets}, field_name="name"
    )
    reads = {
        target.pk: kube.in_background(
            kube.get_deployment,
            cluster=clusters[target.cluster_name],
            namespace=target.namespace,
            name=target.deployment_name,
        )
        for target in targets
        if target.cluster_name in clusters
    }
    waiting = {}
    for target in targets:
        try:
            delay = _judge_rollout(
                target.pk, _look_at(target, reads.get(target.pk)), task_id=task_id
            )
        except Exception:
            # One target's trouble (the database away) must not end the others' following.
            logger.exception("Judging the rollout of target %s failed; looking again", target.pk)
            delay = rollout_poll_seconds()
        if delay is not None:
            waiting[target.pk] = delay
    return waiting


def _judge_rollout(target_id: int, look: _Look, *, task_id: str) -> float | None:
    status = look.status
    with transaction.atomic():
        target = _locked_target(target_id)
        if target.state != TargetState.ROLLING:
            return None
        now = timezone.now()
        if status is not None:
            progressed = target.updated_replicas is not None and (
                status.updated_replicas > target.updated_replicas
                or status.available_replicas > (target.available_replicas or 0)
            )
            if progressed:
                target.deadline_at = _deadline(status.progress_deadline_seconds)
            target.replicas = status.replicas
            target.updated_replicas = status.updated_replicas
            target.available_replicas = status.available_replicas
            target.message = status.message
        if status is not None and status.state == kube.Rollout.COMPLETE:
            target.state, target.success = TargetState.SUCCEEDED, True
        elif look.failure or (status is not None and status.state == kube.Rollout.FAILED):
            target.state, target.success = TargetState.FAILED, False
            target.message = look.failure or status.message
        elif target.deadline_at is not None and now >= target.deadline_at:
            target.state, target.success = TargetState.FAILED, False
            target.message = f'deployment "{target.deployment_name}" exceeded its progress deadline'
            if look.trouble:
                target.message += f" (last error: {look.trouble})"
        else:
            if look.trouble:
                target.message = f"{look.trouble} (looking again)"
            target.save()
            return rollout_poll_seconds()
        target.finished_at = now
        target.save()
        record_events(
            _target_event(
                target,
                action=Action.ROLLOUT_COMPLETE if target.success else Action.ROLLOUT_FAILED,
                outcome=Outcome.SUCCESS if target.success else Outcome.FAILURE,
                message=target.message,
                task_id=task_id,
            )
        )
        _conclude(operation_id=target.operation_id, task_id=task_id)
    return None


# -- clusters and applications ---------------------------------------------------------------


def _cluster_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the cluster a name.")
    return name


def _register_cluster(
    *, name: str, actor, source: str, **connection
) -> tuple[KubernetesCluster, bool]:
    """Create or update the cluster NAME with every `connection` field, and audit it."""
    cluster, created = KubernetesCluster.objects.select_for_update().get_or_create(name=name)
    for field, value in connection.items():
        setattr(cluster, field, value)
    cluster.save()
    record_event(
        action=Action.CLUSTER_IMPORTED,
        actor=actor,
        cluster_name=name,
        message=f"{'Registered' if created else 'Updated'} {source}",
    )
    return cluster, created


@transaction.atomic
def import_cluster(
    *, name: str, kubeconfig_path: str | Path, context: str | None = None, actor=None
) -> tuple[KubernetesCluster, bool]:
    """Register or update the cluster NAME from one context of a kubeconfig file."""
    name = _cluster_name(name)
    credentials = kube.read_kubeconfig(Path(kubeconfig_path), context)
    return _register_cluster(
        name=name,
        actor=actor,
        source=f"from {kubeconfig_path}: {credentials.server} ({credentials.kind})",
        server=credentials.server,
        ca_data=credentials.ca_data,
        insecure_skip_tls_verify=credentials.insecure_skip_tls_verify,
        token=credentials.token,
        client_cert_data=credentials.client_cert_data,
        client_key_data=credentials.client_key_data,
        kubeconfig=credentials.kubeconfig,
        kubeconfig_context=credentials.kubeconfig_context,
        in_cluster=False,
    )


@transaction.atomic
def import_in_cluster(*, name: str, actor=None) -> tuple[KubernetesCluster, bool]:
    """Register or update the cluster NAME as the one the product runs in: reached with the
    pod's ServiceAccount, so credentials stored by an earlier import are dropped."""
    return _register_cluster(
        name=_cluster_name(name),
        actor=actor,
        source="as in-cluster (the pod's ServiceAccount)",
        server="",
        ca_data="",
        insecure_skip_tls_verify=False,
        token="",
        client_cert_data="",
        client_key_data="",
        kubeconfig="",
        kubeconfig_context="",
        in_cluster=True,
    )


@dataclass
class SyncSummary:
    cluster_name: str
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    deployments: int = 0
    applications_created: int = 0
    applications_updated: int = 0
    applications_unchanged: int = 0
    bindings_created: int = 0
    bindings_present: int = 0

    def __str__(self) -> str:
        where = f" (namespaces {', '.join(self.namespaces)})" if self.namespaces else ""
        return (
            f"Cluster {self.cluster_name}{where}: {self.deployments} Deployment(s); applications "
            f"{self.applications_created} created, {self.applications_updated} updated, "
            f"{self.applications_unchanged} unchanged; bindings {self.bindings_created} "
            f"created, {self.bindings_present} already present."
        )


def _synced_tags(current: list[dict], labels: dict[str, str]) -> list[dict]:
    """The application's tags with the labels' values set (other tags kept, order kept)."""
    tags = [dict(tag) for tag in current]
    for key, value in labels.items():
        tag = next((tag for tag in tags if tag["key"] == key), None)
        if tag is None:
            tags.append({"key": key, "value": value})
        else:
            tag["value"] = value
    return tags


def _namespaces(namespaces: Sequence[str]) -> tuple[str, ...]:
    """The namespaces, stripped, validated and without repeats (in the order given)."""
    cleaned = tuple(dict.fromkeys(namespace.strip() for namespace in namespaces))
    for namespace in cleaned:
        try:
            validate_dns1123_label(namespace)
        except ValidationError as error:
            raise ValidationFailed(f"Namespace {namespace!r}: {error.messages[0]}") from None
    return cleaned


def sync_applications(
    *,
    cluster_name: str,
    label: str = DEFAULT_APPLICATION_LABEL,
    namespaces: Sequence[str] = (),
    actor=None,
) -> SyncSummary:
    """One application per distinct value of `label` among the cluster's Deployments, tagged
    with their labels, and a binding per (namespace, Deployment). Idempotent; never deletes.

    With `namespaces`, only those are listed, one namespaced LIST each: what a ServiceAccount
    with namespaced Roles (deploy/) may do. Without, every namespace in one LIST.
    """
    namespaces = _namespaces(namespaces)
    cluster = KubernetesCluster.objects.filter(name=cluster_name).first()
    if cluster is None:
        raise NotFound(f"No cluster is named {cluster_name}.")
    deployments = sorted(
        kube.list_deployments(cluster=cluster, label_selector=label, namespaces=namespaces),
        key=lambda d: (d.metadata.namespace, d.metadata.name),
    )
    by_application: dict[str, list] = {}
    for deployment in deployments:
        value = (deployment.metadata.labels or {}).get(label, "")
        if value:
            by_application.setdefault(value, []).append(deployment)
    summary = SyncSummary(
        cluster_name=cluster.name, namespaces=namespaces, deployments=len(deployments)
    )
    with transaction.atomic():
        for name, items in sorted(by_application.items()):
            labels: dict[str, str] = {}
            for deployment in items:
                for key, value in (deployment.metadata.labels or {}).items():
                    if key != label:
                        labels.setdefault(key, value)
            application, created = Application.objects.select_for_update().get_or_create(
                name=name,
                defaults={
                    "description": f"Synced from cluster {cluster.name}",
                    "tags": _synced_tags([], labels),
                },
            )
            if created:
                summary.applications_created += 1
            else:
                tags = _synced_tags(application.tags, labels)
                if tags == application.tags:
                    summary.applications_unchanged += 1
                else:
                    application.tags = tags
                    application.save(update_fields=["tags", "updated_at"])
                    summary.applications_updated += 1
            for deployment in items:
                _, created = DeploymentBinding.objects.get_or_create(
                    application=application,
                    cluster=cluster,
                    namespace=deployment.metadata.namespace,
                    deployment_name=deployment.metadata.name,
                )
                if created:
                    summary.bindings_created += 1
                else:
                    summary.bindings_present += 1
        record_event(
            action=Action.APPLICATIONS_SYNCED,
            actor=actor,
            cluster_name=cluster.name,
            message=f"{summary} (label {label})",
        )
    return summary
