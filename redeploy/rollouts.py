"""Following a rollout (the worker) until kubectl would call it complete or failed, or its
progress deadline passed: by watching its namespace, as `kubectl rollout status` does, from
the resourceVersion of the restart's PATCH on (following.py: one watch per namespace of a
batch, bounded per task, resumed by the next, a LIST first and after 410 Gone)."""

import logging
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from cratos.audit.recorder import Action, Outcome, record_events

from . import following, kube
from .exceptions import binding_missing_message
from .following import Following, Look
from .models import KubernetesCluster, RedeployTarget
from .operations import (
    TargetState,
    conclude,
    locked_target,
    rollout_deadline,
    target_event,
)

logger = logging.getLogger(__name__)


def _look_from(target: RedeployTarget, deployment) -> Look:
    if deployment is None:
        return Look(failure=binding_missing_message(target.deployment_name))
    try:
        return Look(seen=kube.rollout_status(deployment))
    except Exception as error:
        # Unforeseen: looked at again later, until the progress deadline decides.
        logger.exception("Looking at the rollout of target %s failed", target.pk)
        return Look(trouble=str(error))


class _Namespace(following.Group):
    """The rolling targets of one namespace of one cluster, by Deployment name."""

    def __init__(self, cluster: KubernetesCluster | None, targets: list[RedeployTarget]):
        key = (targets[0].cluster_name, targets[0].namespace)
        super().__init__(key, cluster, {target.deployment_name: target for target in targets})

    def list(self) -> dict[str, Look]:
        found, self.resource_version = kube.list_namespace(
            cluster=self.cluster, namespace=self.key[1], names=list(self.targets)
        )
        by_name = {deployment["metadata"]["name"]: deployment for deployment in found}
        return {name: _look_from(t, by_name.get(name)) for name, t in self.targets.items()}

    def watched(self) -> kube.Watched:
        return kube.Watched(
            cluster=self.cluster,
            namespace=self.key[1],
            resource="deployments",
            field_selector=kube.name_selector(list(self.targets)),
        )

    def looks_at(self, change: kube.Change) -> dict[str, Look]:
        if change.name not in self.targets:
            return {}
        return {change.name: _look_from(self.targets[change.name], change.obj)}

    def judge(self, target: RedeployTarget, look: Look, *, task_id: str) -> bool:
        return _judge_rollout(target.pk, look, task_id=task_id)


def _namespaces(target_ids: Sequence[int]) -> list[_Namespace]:
    targets = RedeployTarget.objects.filter(pk__in=target_ids, state=TargetState.ROLLING)
    return [
        _Namespace(cluster, group)
        for cluster, group in following.grouped(
            targets.order_by("pk"), key=lambda target: (target.cluster_name, target.namespace)
        )
    ]


def check_rollouts(*, target_ids: Sequence[int], task_id: str = "") -> dict[int, float]:
    """One look at each target's rollout (the reconciler's): one LIST per namespace.

    Returns, for the targets still rolling, the seconds after which to look again; the others
    are finished: kubectl would call the rollout complete or failed, or its progress deadline
    passed. Transient API errors only postpone the verdict (until the deadline).
    """
    return following.check(_namespaces(target_ids), task_id=task_id)


def follow_rollouts(
    *, target_ids: Sequence[int], resume: Sequence[Sequence[str]] = (), task_id: str = ""
) -> Following | None:
    """Follow the targets' rollouts for one task's watching time (following.follow).

    Returns what the next task carries, or None once every target finished.
    """
    return following.follow(_namespaces(target_ids), resume=resume, task_id=task_id)


def _judge_rollout(target_id: int, look: Look, *, task_id: str) -> bool:
    """The rollout's verdict, if the look gives one; True when the target finished."""
    status = look.seen
    with transaction.atomic():
        target = locked_target(target_id)
        if target.state != TargetState.ROLLING:
            return True
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
            return False
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
    return True
