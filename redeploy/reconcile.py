"""The reconciler (Celery beat, every minute): no operation stays QUEUED or RUNNING for good.

A task can be lost (the broker down when a follow-up was published, a message dropped) or stop
between two of its writes (the database gone after the PATCH and before the record, retries
spent, a worker killed and its message never delivered again). Once an operation has been
unsettled for OPERATION_STUCK_AFTER_SECONDS, which is longer than a redelivery takes, the
cluster's truth settles it:

- QUEUED: it never started, nothing was sent; it fails and its grant goes back.
- a target whose change nobody claimed: nothing was sent; it fails (no change kept).
- a claimed restart: the Deployment carrying the claimed restartedAt means it was applied
  (recorded, its rollout followed); otherwise it never landed (failed, grant given back).
- a claimed pod deletion: the pod gone, replaced (another uid) or terminating means it was
  applied (followed); the same pod still running means it never was.
- a rollout or a replacement still followed past its deadline: its follower was lost; one look
  decides it.

Each step is a service that locks what it changes and writes its audit events with it, so the
reconciler overlapping a live task or another reconciler is harmless.

Grants held for operations that were never committed go back too (tickets.grant_services).
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from tickets.grant_services import give_back_unclaimed_grants

from . import pod_deletion_ends, pod_deletion_follows, pod_deletion_runs
from .models import PodDeletion, PodDeletionTarget, RedeployOperation, RedeployTarget
from .operations import conclude, fail_target, give_up
from .providers import DELETE_POD_GRANTS, REDEPLOY_GRANTS
from .restarts import resume_restart
from .rollouts import check_rollouts

logger = logging.getLogger(__name__)

NEVER_STARTED = "The task never started (settled by the reconciler); nothing was applied"
NEVER_SENT = "The run stopped before the change was sent (settled by the reconciler)"
UNSETTLED = ("QUEUED", "RUNNING")  # the same values for both actions' operations


@dataclass
class Settled:
    """What the reconciler found to follow from now on: redeploy targets now ROLLING and pod
    deletion targets now DELETING (the task schedules their followers)."""

    rollouts: list[int] = field(default_factory=list)
    pod_deletions: list[int] = field(default_factory=list)


def stuck_after() -> timedelta:
    """How long an operation may stay unsettled (OPERATION_STUCK_AFTER_SECONDS)."""
    return timedelta(seconds=settings.OPERATION_STUCK_AFTER_SECONDS)


def unsettled_counts() -> dict[str, int]:
    """Operations not settled yet, and those among them unsettled for too long."""
    before = timezone.now() - stuck_after()
    counts = {}
    for name, model in (("redeploys", RedeployOperation), ("podDeletions", PodDeletion)):
        unsettled = model.objects.filter(state__in=UNSETTLED)
        counts[name] = unsettled.count()
        counts[f"{name}Stuck"] = _stuck(unsettled, before).count()
    return counts


def _stuck(operations, before):
    return operations.filter(
        Q(state="QUEUED", created_at__lt=before) | Q(state="RUNNING", started_at__lt=before)
    )


def settle_stuck_operations(*, task_id: str = "") -> Settled:
    """Settle every operation unsettled for too long, and give back grants held for
    operations that were never committed. Safe to run at any time, twice, or beside a task."""
    before = timezone.now() - stuck_after()
    settled = Settled(
        rollouts=_settle(REDEPLOYS, before=before, task_id=task_id),
        pod_deletions=_settle(POD_DELETIONS, before=before, task_id=task_id),
    )
    for kind, model in ((REDEPLOY_GRANTS, RedeployOperation), (DELETE_POD_GRANTS, PodDeletion)):
        give_back_unclaimed_grants(
            kind=kind,
            unclaimed=lambda ids, model=model: _without_operation(model, ids),
            grace_seconds=stuck_after().total_seconds(),
        )
    return settled


def _without_operation(model, operation_ids: list[str]) -> list[str]:
    valid = {}
    for operation_id in operation_ids:
        try:
            valid[uuid.UUID(operation_id)] = operation_id
        except ValueError:
            logger.warning("A held grant names no operation id: %r", operation_id)
    found = set(model.objects.filter(pk__in=list(valid)).values_list("pk", flat=True))
    return [operation_id for pk, operation_id in valid.items() if pk not in found]


def _safely(settle: Callable, *args, **kwargs):
    """One operation's trouble (a bug, the database away) must not keep the others unsettled:
    logged, and tried again on the next run."""
    try:
        return settle(*args, **kwargs)
    except Exception:
        logger.exception("The reconciler could not settle %s %s", args, kwargs)
        return None


@dataclass(frozen=True)
class _Action:
    """How the reconciler settles one granted action's operations and targets."""

    operations: type
    targets: type
    give_up: Callable  # an operation that never started: failed, its grant back
    fail_unsent: Callable  # (target, task_id=): a target whose change was never sent
    claimed: Callable  # (target): its change was claimed, so perhaps sent
    settle_claimed: Callable  # (target, task_id=): True when applied (to be followed)
    following: str  # the state of a target whose outcome is being followed
    look: Callable  # (target_ids=, task_id=): one look at followed targets
    conclude: Callable


REDEPLOYS = _Action(
    operations=RedeployOperation,
    targets=RedeployTarget,
    give_up=give_up,
    fail_unsent=lambda target, task_id: fail_target(
        target.pk, message=NEVER_SENT, task_id=task_id, keep_change=False
    ),
    claimed=lambda target: bool(target.restarted_at),
    settle_claimed=lambda target, task_id: resume_restart(target, task_id=task_id, late=True),
    following=RedeployTarget.State.ROLLING,
    look=check_rollouts,
    conclude=conclude,
)
POD_DELETIONS = _Action(
    operations=PodDeletion,
    targets=PodDeletionTarget,
    give_up=pod_deletion_ends.give_up,
    fail_unsent=lambda target, task_id: pod_deletion_runs.fail_unsent(
        target.pk, message=NEVER_SENT, task_id=task_id
    ),
    claimed=lambda target: target.deleted,
    settle_claimed=pod_deletion_runs.settle_claimed_deletion,
    following=PodDeletionTarget.State.DELETING,
    look=pod_deletion_follows.check_pod_deletions,
    conclude=pod_deletion_ends.conclude,
)


def _settle(action: _Action, *, before, task_id: str) -> list[int]:
    """Settle the action's operations unsettled since before `before`; returns the targets
    to follow from now on."""
    stuck = _stuck(action.operations.objects.all(), before)
    for pk in stuck.filter(state="QUEUED").order_by("created_at").values_list("pk", flat=True):
        _safely(action.give_up, operation_id=pk, message=NEVER_STARTED, task_id=task_id)
    running = stuck.filter(state="RUNNING")
    followed = []
    for target in (
        action.targets.objects.filter(operation__in=running, state="PENDING")
        .select_related("operation")
        .order_by("pk")
    ):
        run_id = task_id or target.operation.celery_task_id
        if not action.claimed(target):
            _safely(action.fail_unsent, target, task_id=run_id)
        elif _safely(action.settle_claimed, target, task_id=run_id):
            followed.append(target.pk)
    # Followed past its deadline: its follower was lost (a live one would have decided).
    lost = list(
        action.targets.objects.filter(
            state=action.following, deadline_at__lt=timezone.now()
        ).values_list("pk", flat=True)
    )
    if lost:
        followed += list(_safely(action.look, target_ids=lost, task_id=task_id) or ())
    # An operation whose every target finished but that was never concluded.
    for pk in running.values_list("pk", flat=True):
        _safely(action.conclude, operation_id=pk, task_id=task_id)
    return followed
