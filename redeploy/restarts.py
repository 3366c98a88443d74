"""Running redeploys (the worker): start them, refuse a paused Deployment like kubectl, claim
each restart, PATCH it, record it.

Only a QUEUED operation starts (its targets are written from the bindings, in one
transaction); only a target whose restart nobody claimed is restarted. The claim (the
restartedAt value, committed before the PATCH) is what makes a second run harmless: a worker
killed before it leaves the target to the redelivered task, one killed after it leaves a
restart perhaps sent, which the redelivered task looks for and never sends again.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from cratos.audit.recorder import Action, Outcome, record_events

from . import in_flight, kube
from .exceptions import (
    KubeError,
    KubeTransientError,
    RestartInDoubt,
    binding_missing_message,
    operation_failed_message,
)
from .models import KubernetesCluster, RedeployOperation, RedeployTarget
from .operations import (
    OperationState,
    TargetState,
    conclude,
    fail_target,
    operation_event,
    rollout_deadline,
    target_event,
)
from .restart_checks import Looks, Pending, as_looked, failure_message
from .selectors import bindings_matching_each

logger = logging.getLogger(__name__)


def _start(*, operation_ids: Sequence, task_id: str, looks: Looks | None = None) -> None:
    """The QUEUED operations among `operation_ids` RUNNING, in one transaction, with a target
    per binding they restart (a failed one when there is none) and their audit events: a
    constant number of queries however long the batch. `looks`: started on the Deployments
    while the targets are written."""
    with transaction.atomic():
        operations = list(
            RedeployOperation.objects.select_for_update(of=("self",))
            .select_related("requested_by", "ticket")
            .filter(pk__in=operation_ids, state=OperationState.QUEUED)
            .order_by("pk")
        )
        now = timezone.now()
        started = {"state": OperationState.RUNNING, "started_at": now}
        if task_id:
            started["celery_task_id"] = task_id
        RedeployOperation.objects.filter(pk__in=[o.pk for o in operations]).update(**started)
        targets, events = [], []
        matching = bindings_matching_each(operations)
        if looks is not None:
            looks.begin(
                [(b.cluster.name, b.namespace, b.deployment_name) for bs in matching for b in bs]
            )
        for operation, bindings in zip(operations, matching, strict=True):
            for field, value in started.items():
                setattr(operation, field, value)
            events.append(
                operation_event(
                    operation,
                    action=Action.REDEPLOY_STARTED,
                    outcome=Outcome.INFO,
                    message=f"Restarting {len(bindings)} Deployment(s)",
                )
            )
            targets += [
                RedeployTarget(
                    operation=operation,
                    ticket_id=operation.ticket_id,
                    binding=binding,
                    cluster_name=binding.cluster.name,
                    namespace=binding.namespace,
                    deployment_name=binding.deployment_name,
                )
                for binding in bindings
            ]
            if not bindings:
                missing = RedeployTarget(
                    operation=operation,
                    ticket_id=operation.ticket_id,
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
                    target_event(
                        missing,
                        action=Action.REDEPLOY_FAILED,
                        outcome=Outcome.FAILURE,
                        message=missing.message,
                        task_id=operation.celery_task_id,
                    )
                )
        RedeployTarget.objects.bulk_create(targets)
        record_events(*events)


def _claim(pending: list[Pending]) -> list[Pending]:
    """Fix the restartedAt of each target, committed before its PATCH; those a concurrent run
    of the same task claimed first are left to it."""
    if not pending:
        return []
    restarted_at = kube.now_restarted_at()
    won: set[int] = set()
    try:
        with transaction.atomic():
            won = set(
                RedeployTarget.objects.select_for_update()
                .filter(
                    pk__in=[item.target.pk for item in pending],
                    state=TargetState.PENDING,
                    restarted_at="",
                )
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            in_flight.hold(sorted(won))
            RedeployTarget.objects.filter(pk__in=won).update(restarted_at=restarted_at)
    except BaseException:
        in_flight.release(sorted(won))  # nothing was claimed, so nothing stays held
        raise
    claimed = [item for item in pending if item.target.pk in won]
    for item in claimed:
        item.target.restarted_at = restarted_at
    return claimed


# What recording an applied restart changes on its target: alike for the targets of one claim
# with one progress deadline (a batch's, mostly), and its own for each.
RECORDED_ALIKE = [
    "state",
    "restarted_at",
    "operated_at",
    "progress_deadline_seconds",
    "deadline_at",
    "message",
]
RECORDED_EACH = ["generation", "resource_version"]


@dataclass
class _Restarted:
    target_id: int
    restart: kube.Restart
    progress_deadline_seconds: int


def _record_restarts(restarted: list[_Restarted], *, task_id: str) -> None:
    """The applied restarts, in one transaction: their targets ROLLING, an event each.

    The target changes only while it still waits on this very claim, never after another run
    decided it. The event is written unless another run recorded this very restart already
    (a redelivered run that looked at it): one applied restart, one event."""
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
        events, alike, deadlines = [], defaultdict(list), {}
        for item in sorted(restarted, key=lambda item: item.target_id):
            target, restart = targets[item.target_id], item.restart
            ours = target.restarted_at == restart.restarted_at
            if ours and target.generation is not None:
                continue
            waiting = ours and target.state == TargetState.PENDING
            target.state = TargetState.ROLLING
            target.restarted_at = restart.restarted_at
            target.generation = restart.generation
            target.resource_version = restart.resource_version
            target.operated_at = now
            target.progress_deadline_seconds = item.progress_deadline_seconds
            seconds = item.progress_deadline_seconds
            target.deadline_at = deadlines.setdefault(seconds, rollout_deadline(seconds))
            target.message = f"Restarted (restartedAt {restart.restarted_at}); rolling out..."
            if waiting:
                alike[restart.restarted_at, seconds].append(target)
            events.append(
                target_event(
                    target,
                    action=Action.REDEPLOY_SUCCEEDED,
                    outcome=Outcome.SUCCESS,
                    message=f"Restart applied: restartedAt {restart.restarted_at}",
                    task_id=task_id,
                )
            )
        # A few UPDATEs however many targets: Django's bulk_update costs per row and field.
        for group in alike.values():
            RedeployTarget.objects.filter(pk__in=[target.pk for target in group]).update(
                **{name: getattr(group[0], name) for name in RECORDED_ALIKE}
            )
        RedeployTarget.objects.bulk_update(
            [target for group in alike.values() for target in group], RECORDED_EACH
        )
        record_events(*events)


def _restart(pending: list[Pending], *, task_id: str) -> None:
    """Refuse a paused Deployment like kubectl, claim the restarts of the others and send them
    side by side (each group as soon as its look ended), and record the restarts that were
    applied. The claimed targets are held in flight (redeploy.in_flight) until then."""
    patches, restarted = [], []
    try:
        for looked in as_looked(pending):
            ready = []
            for item in looked:
                if failure := item.refusal():
                    fail_target(item.target.pk, message=failure, task_id=task_id, keep_change=False)
                else:
                    ready.append(item)
            patches += [
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
                for item in _claim(ready)
            ]
        for item, patch in patches:
            target = item.target
            try:
                restart = patch.result()
            except KubeError as error:
                in_doubt = isinstance(error, RestartInDoubt)
                fail_target(
                    target.pk,
                    message=operation_failed_message(error.message)
                    if in_doubt
                    else failure_message(error),
                    task_id=task_id,
                    keep_change=in_doubt,
                    claim=target.restarted_at,
                )
                continue
            except Exception as error:
                # Unforeseen (a bug, the client): the PATCH may have gone out; never repeated.
                logger.exception("Restart of target %s ended unexpectedly", target.pk)
                fail_target(
                    target.pk,
                    message=operation_failed_message(
                        f"{error} (the restart may have been applied; it was not repeated)"
                    ),
                    task_id=task_id,
                    keep_change=True,
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
        try:
            _record_restarts(restarted, task_id=task_id)
        finally:
            in_flight.release([item.target.pk for item, _ in patches])


def _earlier(seen: str, *, than: str) -> bool:
    """Whether the Deployment's restartedAt (none: "") is older than ours. Anything that does
    not read as a time (kubectl writes RFC 3339 with its own offset) counts as not older: ours
    may have been applied before it."""
    if not seen:
        return True
    try:
        return datetime.fromisoformat(seen) < datetime.fromisoformat(than)
    except ValueError:
        return False


def resume_restart(target: RedeployTarget, *, task_id: str, late: bool = False) -> bool:
    """A target whose restart was claimed, perhaps sent, by a run that stopped before it
    recorded the outcome: look at the Deployment, never PATCH again. True when the restart is
    there (recorded now: its rollout is to be followed). A run that is still on it (it holds
    the target in flight) is left to record the outcome itself: False, nothing done."""
    with in_flight.unless_held(target.pk) as free:
        return free and _look_at_restart(target, task_id=task_id, late=late)


def _look_at_restart(target: RedeployTarget, *, task_id: str, late: bool) -> bool:
    """resume_restart's look, the target held by this run.

    A redelivered task (`late` False) may come right after the claiming run died, its PATCH
    perhaps still landing, so a restart not visible yet is failed as perhaps applied. The
    reconciler (`late`) comes long after any PATCH could land: not visible means not applied,
    and the grant goes back. Should the Deployment carry a later restartedAt (restarted since
    by someone else), ours may have been applied before it. The API away is left to the
    reconciler's next run, until the grant's lifetime is over.
    """
    cluster = KubernetesCluster.objects.filter(name=target.cluster_name).first()
    if cluster is None:
        fail_target(
            target.pk,
            message=binding_missing_message(target.deployment_name),
            task_id=task_id,
            keep_change=True,
        )
        return False
    try:
        deployment = kube.get_deployment(
            cluster=cluster, namespace=target.namespace, name=target.deployment_name
        )
    except KubeError as error:
        expires = target.operation.authorization_expires_at
        waiting = isinstance(error, KubeTransientError) and not (
            expires and expires <= timezone.now()
        )
        if late and waiting:
            logger.warning("Target %s: %s; looking again later", target.pk, error.message)
            return False
        fail_target(
            target.pk,
            message=operation_failed_message(
                f"{error.message} (the restart may have been applied; it was not repeated)"
            ),
            task_id=task_id,
            keep_change=True,
        )
        return False
    seen = kube.restarted_at_of(deployment) or ""
    if seen != target.restarted_at:
        lost = late and _earlier(seen, than=target.restarted_at)
        message = (
            f"the restart (restartedAt {target.restarted_at}) never reached the Deployment; "
            "nothing was applied"
            if lost
            else f"the restart (restartedAt {target.restarted_at}) was interrupted and is not "
            "visible on the Deployment; it was not repeated"
        )
        fail_target(
            target.pk,
            message=operation_failed_message(message),
            task_id=task_id,
            keep_change=not lost,
            claim=target.restarted_at,
        )
        return False
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
    return True


def _pending_targets(operation_ids: Sequence):
    return RedeployTarget.objects.filter(
        operation_id__in=operation_ids,
        operation__state=OperationState.RUNNING,
        state=TargetState.PENDING,
    ).order_by("pk")


def _resume(operation_ids: Sequence, *, started: list[Pending], task_id: str) -> None:
    """The targets of the RUNNING operations that this run did not restart: claimed by a run
    killed since (looked at, never restarted again), or of a cluster removed meanwhile."""
    for target in (
        _pending_targets(operation_ids)
        .select_related("operation")
        .exclude(pk__in=[item.target.pk for item in started])
    ):
        run_id = task_id or target.operation.celery_task_id
        if target.restarted_at:
            resume_restart(target, task_id=run_id)
        else:
            fail_target(
                target.pk,
                message=binding_missing_message(target.deployment_name),
                task_id=run_id,
                keep_change=False,
            )


def run_redeploys(*, operation_ids: Sequence, task_id: str = "") -> list[RedeployOperation]:
    """The task's work for a batch of operations (often one): start the QUEUED ones, then check,
    claim and restart every target not yet claimed.

    Safe to run twice: only a QUEUED operation starts; a redelivered RUNNING one looks at its
    claimed targets and never sends a second restart.
    Returns the operations with their targets; ROLLING ones are to be followed (check_rollouts).
    """
    looks = Looks()
    _start(operation_ids=operation_ids, task_id=task_id, looks=looks)
    # Every target no run has claimed yet: this run's, or a killed run's.
    started = looks.pending(list(_pending_targets(operation_ids).filter(restarted_at="")))
    _restart(started, task_id=task_id)
    _resume(operation_ids, started=started, task_id=task_id)
    # Those whose every target failed at the start (no binding): nothing else concludes them.
    for operation in RedeployOperation.objects.filter(
        pk__in=operation_ids, state=OperationState.RUNNING
    ).exclude(targets__state__in=[TargetState.PENDING, TargetState.ROLLING]):
        conclude(operation_id=operation.pk, task_id=task_id or operation.celery_task_id)
    return list(
        RedeployOperation.objects.select_related("requested_by", "ticket")
        .prefetch_related("targets")
        .filter(pk__in=operation_ids)
        .order_by("created_at", "pk")
    )
