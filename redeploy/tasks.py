"""Celery tasks: thin shells around the services of redeploy.

acks_late: a task whose worker dies is delivered again, and the services make a second run
harmless. ServiceUnavailable (Redis or the database briefly away) is retried with backoff.
"""

import time

from celery import shared_task

from cratos.exceptions import ServiceUnavailable

from .models import RedeployTarget
from .operations import give_up, rollout_poll_seconds
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
