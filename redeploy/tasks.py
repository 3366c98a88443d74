"""Celery tasks: thin shells around the services of redeploy.

acks_late: a task whose worker dies is delivered again, and the services make a second run
harmless. Redis or the database briefly away (ServiceUnavailable, a database error such as a
connection cut) is retried with backoff. Whatever a task leaves unsettled, the reconciler
(settle_stuck_operations, every minute) settles from the cluster's truth.
"""

import logging
import time

from celery import shared_task
from celery.signals import worker_before_create_process
from django.db import DatabaseError, InterfaceError, OperationalError

from cratos.exceptions import ServiceUnavailable

from . import (
    kube,
    pod_deletion_ends,
    pod_deletion_follows,
    pod_deletion_runs,
    pod_listings,
    reconcile,
    rollouts,
)
from .models import PodDeletionTarget, RedeployTarget
from .operations import give_up, rollout_poll_seconds
from .pod_deletions import RUN_POD_DELETION
from .redeploys import RUN_REDEPLOYS
from .restarts import run_redeploys as run_redeploy_operations

SETTLE_STUCK_OPERATIONS = "redeploy.settle_stuck_operations"

logger = logging.getLogger(__name__)

# Errors that pass: Redis or the database away, a database connection cut. (Not every
# DatabaseError: an IntegrityError is a bug that a retry repeats.)
TRANSIENT = (ServiceUnavailable, OperationalError, InterfaceError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
}
DATABASE_AWAY = "The database is not answering; the operation was not started."


@worker_before_create_process.connect
def _load_kube_api_classes(**kwargs) -> None:
    # In a prefork worker's main process, before it forks each child: otherwise every child
    # pays the client's API classes (seconds of CPU) on its first redeploy, which a burst of
    # them right after a worker starts waits behind. A solo or threads worker has no children
    # and imports them on its first call, as any other process.
    kube.load_api_classes()


def _reason(error: Exception) -> str:
    return error.message if isinstance(error, ServiceUnavailable) else DATABASE_AWAY


def _give_up(settle, **kwargs) -> None:
    """The last try: an operation that never started says why instead of staying QUEUED. With
    the database still away this fails too, and the reconciler settles it later."""
    try:
        settle(**kwargs)
    except (DatabaseError, ServiceUnavailable):
        logger.warning("Giving up on operation %s failed; left to the reconciler", kwargs)


@shared_task(bind=True, acks_late=True, name=RUN_REDEPLOYS, **RETRY)
def run_redeploys(self, operation_ids: list[str]) -> None:
    """The redeploys of one request (often one): restart, then follow their rollouts."""
    try:
        operations = run_redeploy_operations(operation_ids=operation_ids, task_id=self.request.id)
    except TRANSIENT as error:
        if self.request.retries >= self.max_retries:
            for operation_id in operation_ids:
                _give_up(
                    give_up,
                    operation_id=operation_id,
                    message=_reason(error),
                    task_id=self.request.id,
                )
        raise
    rolling = [
        target.pk
        for operation in operations
        for target in operation.targets.all()
        if target.state == RedeployTarget.State.ROLLING
    ]
    if rolling:
        follow_rollouts.apply_async(kwargs={"target_ids": rolling})


def _follow_on(task, follow, *, target_ids: list[int], resume: list[list[str]]) -> None:
    """Watch for a while (`follow`), then a new run of `task` resumes the watches: no worker
    is held for a whole rollout or pod replacement."""
    while following := follow(target_ids=target_ids, resume=resume, task_id=task.request.id):
        target_ids, resume = following.target_ids, following.resume
        if not task.request.is_eager:
            task.apply_async(
                kwargs={"target_ids": target_ids, "resume": resume}, countdown=following.delay
            )
            return
        # No broker (the zero-setup demo runs tasks in-process): follow right here.
        time.sleep(following.delay)


@shared_task(bind=True, acks_late=True, name="redeploy.follow_rollouts", **RETRY)
def follow_rollouts(self, target_ids: list[int], resume: list[list[str]] = ()) -> None:
    """Watch the rollouts (rollouts.follow_rollouts), task after task."""
    _follow_on(self, rollouts.follow_rollouts, target_ids=target_ids, resume=resume)


@shared_task(bind=True, acks_late=True, name=RUN_POD_DELETION, **RETRY)
def run_pod_deletion(self, operation_id: str) -> None:
    """A pod deletion: delete its pods, then follow their replacements."""
    try:
        operation = pod_deletion_runs.run_pod_deletion(
            operation_id=operation_id, task_id=self.request.id
        )
    except TRANSIENT as error:
        if self.request.retries >= self.max_retries:
            _give_up(
                pod_deletion_ends.give_up,
                operation_id=operation_id,
                message=_reason(error),
                task_id=self.request.id,
            )
        raise
    deleting = [
        target.pk
        for target in operation.targets.all()
        if target.state == PodDeletionTarget.State.DELETING
    ]
    if deleting:
        follow_pod_deletions.apply_async(kwargs={"target_ids": deleting})


@shared_task(bind=True, acks_late=True, name="redeploy.follow_pod_deletions", **RETRY)
def follow_pod_deletions(self, target_ids: list[int], resume: list[list[str]] = ()) -> None:
    """Watch the deleted pods' replacements (pod_deletion_follows), task after task."""
    _follow_on(
        self, pod_deletion_follows.follow_pod_deletions, target_ids=target_ids, resume=resume
    )


@shared_task(bind=True, name=SETTLE_STUCK_OPERATIONS)
def settle_stuck_operations(self) -> dict[str, int]:
    """Beat, every minute: settle what stayed unsettled too long, then follow what it found
    applied (a run that overlaps the next one is harmless)."""
    settled = reconcile.settle_stuck_operations(task_id=self.request.id or "")
    if settled.rollouts:
        follow_rollouts.apply_async(
            kwargs={"target_ids": settled.rollouts}, countdown=rollout_poll_seconds()
        )
    if settled.pod_deletions:
        follow_pod_deletions.apply_async(
            kwargs={"target_ids": settled.pod_deletions}, countdown=rollout_poll_seconds()
        )
    return {"rollouts": len(settled.rollouts), "podDeletions": len(settled.pod_deletions)}


@shared_task(name=pod_listings.LIST_PODS)
def list_pods(listing_id: str, binding_id: int) -> None:
    """The pods the pod-delete page offers, listed here where the credentials are. Not
    acks_late nor retried: it changes nothing, and the page waits only a few seconds."""
    pod_listings.answer_listing(listing_id=listing_id, binding_id=binding_id)
