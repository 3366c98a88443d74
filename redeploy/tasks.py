"""Celery tasks: thin shells around redeploy.services.

acks_late: a task whose worker dies is delivered again, and the services make a second run
harmless. ServiceUnavailable (Redis or the database briefly away) is retried with backoff.
"""

import time

from celery import shared_task

from cratos.exceptions import ServiceUnavailable

from . import services
from .models import RedeployTarget

RETRY = {
    "autoretry_for": (ServiceUnavailable,),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


@shared_task(bind=True, acks_late=True, name="redeploy.run_redeploy", **RETRY)
def run_redeploy(self, operation_id: str) -> None:
    try:
        operation = services.run_redeploy(operation_id=operation_id, task_id=self.request.id)
    except ServiceUnavailable as error:
        if self.request.retries >= self.max_retries:
            # The last try: a redeploy that never started says why instead of staying QUEUED.
            services.give_up_redeploy(
                operation_id=operation_id, message=error.message, task_id=self.request.id
            )
        raise
    for target in operation.targets.all():
        if target.state == RedeployTarget.State.ROLLING:
            follow_rollout.apply_async(
                kwargs={"target_id": target.pk}, countdown=services.rollout_poll_seconds()
            )


@shared_task(bind=True, acks_late=True, name="redeploy.follow_rollout", **RETRY)
def follow_rollout(self, target_id: int) -> None:
    """One look at the rollout, then a new task later: no worker waits on a rollout."""
    while (
        delay := services.check_rollout(target_id=target_id, task_id=self.request.id)
    ) is not None:
        if not self.request.is_eager:
            follow_rollout.apply_async(kwargs={"target_id": target_id}, countdown=delay)
            return
        # No broker (the zero-setup demo runs tasks in-process): follow right here.
        time.sleep(delay)
