"""Following a rollout (the worker): one look at a time, until kubectl would call it complete
or failed, or its progress deadline passed. No worker waits on a rollout: the task looks, then
schedules the next look."""

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from cratos.audit.recorder import Action, Outcome, record_events

from . import kube
from .exceptions import KubeError, KubeTransientError, binding_missing_message
from .models import KubernetesCluster, RedeployTarget
from .operations import (
    TargetState,
    conclude,
    locked_target,
    rollout_deadline,
    rollout_poll_seconds,
    target_event,
)
from .restarts import failure_message

logger = logging.getLogger(__name__)


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
        return _Look(failure=failure_message(error))
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
        target = locked_target(target_id)
        if target.state != TargetState.ROLLING:
            return None
        now = timezone.now()
        if status is not None:
            progressed = target.updated_replicas is not None and (
                status.updated_replicas > target.updated_replicas
                or status.available_replicas > (target.available_replicas or 0)
            )
            if progressed:
                target.deadline_at = rollout_deadline(status.progress_deadline_seconds)
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
            target_event(
                target,
                action=Action.ROLLOUT_COMPLETE if target.success else Action.ROLLOUT_FAILED,
                outcome=Outcome.SUCCESS if target.success else Outcome.FAILURE,
                message=target.message,
                task_id=task_id,
            )
        )
        conclude(operation_id=target.operation_id, task_id=task_id)
    return None
