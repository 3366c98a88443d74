"""Celery tasks: thin shells around the services of redeploy.

acks_late: a task whose worker dies is delivered again, and the services make a second run
harmless. ServiceUnavailable (Redis or the database briefly away) is retried with backoff.
"""

import time

from celery import shared_task

from cratos.exceptions import ServiceUnavailable

from . import pod_deletion_ends, pod_deletion_runs, pod_listings
from .models import PodDeletionTarget, RedeployTarget
from .operations import give_up, rollout_poll_seconds
from .pod_deletions import RUN_POD_DELETION
from .redeploys import RUN_REDEPLOYS
from .restarts import run_redeploys as run_redeploy_operations
from .rollouts import check_rollouts

RETRY = {
    "autoretry_for": (ServiceUnavailable,),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


@shared_task(bind=True, acks_late=True, name=RUN_REDEPLOYS, **RETRY)
def run_redeploys(self, operation_ids: list[str]) -> None:
    """The redeploys of one request (often one): restart, then follow their rollouts."""
    try:
        operations = run_redeploy_operations(operation_ids=operation_ids, task_id=self.request.id)
    except ServiceUnavailable as error:
        if self.request.retries >= self.max_retries:
            # The last try: a redeploy that never started says why instead of staying QUEUED.
            for operation_id in operation_ids:
                give_up(operation_id=operation_id, message=error.message, task_id=self.request.id)
        raise
    rolling = [
        target.pk
        for operation in operations
        for target in operation.targets.all()
        if target.state == RedeployTarget.State.ROLLING
    ]
    if rolling:
        follow_rollouts.apply_async(
            kwargs={"target_ids": rolling}, countdown=rollout_poll_seconds()
        )


@shared_task(bind=True, acks_late=True, name="redeploy.follow_rollouts", **RETRY)
def follow_rollouts(self, target_ids: list[int]) -> None:
    """One look at each rollout, then a new task later: no worker waits on a rollout."""
    while waiting := check_rollouts(target_ids=target_ids, task_id=self.request.id):
        target_ids, delay = list(waiting), min(waiting.values())
        if not self.request.is_eager:
            follow_rollouts.apply_async(kwargs={"target_ids": target_ids}, countdown=delay)
            return
        # No broker (the zero-setup demo runs tasks in-process): follow right here.
        time.sleep(delay)


@shared_task(bind=True, acks_late=True, name=RUN_POD_DELETION, **RETRY)
def run_pod_deletion(self, operation_id: str) -> None:
    """A pod deletion: delete its pods, then follow their replacements."""
    try:
        operation = pod_deletion_runs.run_pod_deletion(
            operation_id=operation_id, task_id=self.request.id
        )
    except ServiceUnavailable as error:
        if self.request.retries >= self.max_retries:
            # The last try: a deletion that never started says why instead of staying QUEUED.
            pod_deletion_ends.give_up(
                operation_id=operation_id, message=error.message, task_id=self.request.id
            )
        raise
    deleting = [
        target.pk
        for target in operation.targets.all()
        if target.state == PodDeletionTarget.State.DELETING
    ]
    if deleting:
        follow_pod_deletions.apply_async(
            kwargs={"target_ids": deleting}, countdown=rollout_poll_seconds()
        )


@shared_task(bind=True, acks_late=True, name="redeploy.follow_pod_deletions", **RETRY)
def follow_pod_deletions(self, target_ids: list[int]) -> None:
    """One look at each deleted pod's replacement, then a new task later (as follow_rollouts)."""
    while waiting := pod_deletion_runs.check_pod_deletions(
        target_ids=target_ids, task_id=self.request.id
    ):
        target_ids, delay = list(waiting), min(waiting.values())
        if not self.request.is_eager:
            follow_pod_deletions.apply_async(kwargs={"target_ids": target_ids}, countdown=delay)
            return
        time.sleep(delay)


@shared_task(name=pod_listings.LIST_PODS)
def list_pods(listing_id: str, binding_id: int) -> None:
    """The pods the pod-delete page offers, listed here where the credentials are. Not
    acks_late nor retried: it changes nothing, and the page waits only a few seconds."""
    pod_listings.answer_listing(listing_id=listing_id, binding_id=binding_id)
