"""Following a rollout (the worker) until kubectl would call it complete or failed, or its
progress deadline passed: by watching its namespace, as `kubectl rollout status` does, from
the resourceVersion of the restart's PATCH on. One task watches every namespace of a batch at
once, for at most REDEPLOY_ROLLOUT_WATCH_SECONDS; the next task resumes each watch where it
stopped, so no worker is held for a whole rollout and no change is missed. A namespace is
LISTed first (the state the watch starts from, as kubectl's list-then-watch), and again when
the API server compacted its history past our resourceVersion (410 Gone)."""

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, transaction
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


@dataclass
class Following:
    """What the next follow-up task carries: the targets still rolling, where to resume each
    namespace's watch ([cluster, namespace, resourceVersion]), and how long to wait first
    (after trouble)."""

    target_ids: list[int]
    resume: list[list[str]] = field(default_factory=list)
    delay: float = 0.0


def _look_from(target: RedeployTarget, deployment) -> _Look:
    if deployment is None:
        return _Look(failure=binding_missing_message(target.deployment_name))
    try:
        return _Look(status=kube.rollout_status(deployment))
    except Exception as error:
        # Unforeseen: looked at again later, until the progress deadline decides.
        logger.exception("Looking at the rollout of target %s failed", target.pk)
        return _Look(trouble=str(error))


def _trouble_look(error: Exception) -> _Look:
    if isinstance(error, KubeTransientError):
        return _Look(trouble=error.message)
    if isinstance(error, KubeError):
        return _Look(failure=failure_message(error))
    logger.exception("Listing Deployments to follow their rollouts failed")
    return _Look(trouble=str(error))


class _Namespace:
    """The rolling targets of one namespace of one cluster, and where its watch stands."""

    def __init__(self, cluster: KubernetesCluster | None, targets: list[RedeployTarget]):
        self.cluster, self.namespace = cluster, targets[0].namespace
        self.targets = {target.deployment_name: target for target in targets}
        self.resource_version = ""

    def list(self) -> dict[str, _Look]:
        """One LIST of the namespace: a look at each target; the watch resumes after it."""
        if self.cluster is None:
            return {name: _look_from(t, None) for name, t in self.targets.items()}
        try:
            found, self.resource_version = kube.list_namespace(
                cluster=self.cluster, namespace=self.namespace, names=list(self.targets)
            )
        except Exception as error:
            return dict.fromkeys(self.targets, _trouble_look(error))
        by_name = {deployment["metadata"]["name"]: deployment for deployment in found}
        return {name: _look_from(t, by_name.get(name)) for name, t in self.targets.items()}


def _namespaces(target_ids: Sequence[int]) -> list[_Namespace]:
    targets = list(
        RedeployTarget.objects.filter(pk__in=target_ids, state=TargetState.ROLLING).order_by("pk")
    )
    clusters = KubernetesCluster.objects.in_bulk(
        {target.cluster_name for target in targets}, field_name="name"
    )
    grouped = defaultdict(list)
    for target in targets:
        grouped[target.cluster_name, target.namespace].append(target)
    return [_Namespace(clusters.get(cluster), group) for (cluster, _), group in grouped.items()]


def _judge(namespace: _Namespace, looks: dict[str, _Look], *, task_id: str) -> bool:
    """Judge the targets looked at; True when one is still rolling but the look was
    troubled. Finished targets leave the namespace."""
    troubled = False
    for name, look in looks.items():
        target = namespace.targets[name]
        try:
            delay = _judge_rollout(target.pk, look, task_id=task_id)
        except DatabaseError:
            # The connection is lost for this task: it is retried (a new task, a new
            # connection), resuming the watches from the start.
            raise
        except Exception:
            # One target's unforeseen trouble must not end the others' following.
            logger.exception("Judging the rollout of target %s failed; looking again", target.pk)
            delay, look = rollout_poll_seconds(), _Look(trouble="judging failed")
        if delay is None:
            del namespace.targets[name]
        troubled = troubled or (delay is not None and bool(look.trouble))
    return troubled


def check_rollouts(*, target_ids: Sequence[int], task_id: str = "") -> dict[int, float]:
    """One look at each target's rollout (step 6): one LIST per namespace.

    Returns, for the targets still rolling, the seconds after which to look again; the others
    are finished: kubectl would call the rollout complete or failed, or its progress deadline
    passed. Transient API errors only postpone the verdict (until the deadline).
    """
    namespaces = _namespaces(target_ids)
    for namespace in namespaces:
        _judge(namespace, namespace.list(), task_id=task_id)
    return {t.pk: rollout_poll_seconds() for n in namespaces for t in n.targets.values()}


def _watch_seconds(namespaces: list[_Namespace]) -> float:
    """This task's watching time: the setting's, or less when a rollout's deadline (of ours:
    the controller's verdict comes as a change) falls within it."""
    seconds = settings.REDEPLOY_ROLLOUT_WATCH_SECONDS
    now = timezone.now()
    for namespace in namespaces:
        for target in namespace.targets.values():
            if target.deadline_at is not None:
                seconds = min(seconds, (target.deadline_at - now).total_seconds() + 1)
    return max(1.0, seconds)


def follow_rollouts(
    *, target_ids: Sequence[int], resume: Sequence[Sequence[str]] = (), task_id: str = ""
) -> Following | None:
    """Follow the targets' rollouts for one task's watching time (see the module docstring).

    Returns what the next task carries, or None once every target finished.
    """
    namespaces = _namespaces(target_ids)
    resumed = {(cluster, ns): version for cluster, ns, version in resume}
    by_key = {}
    troubled = False
    seconds = _watch_seconds(namespaces)
    until = time.monotonic() + seconds
    with kube.Watches() as watches:

        def watch(namespace: _Namespace) -> None:
            if namespace.targets and namespace.cluster is not None:
                watches.start(
                    cluster=namespace.cluster,
                    namespace=namespace.namespace,
                    names=list(namespace.targets),
                    resource_version=namespace.resource_version,
                    seconds=until - time.monotonic(),
                )

        for namespace in namespaces:
            key = (namespace.cluster.name if namespace.cluster else "", namespace.namespace)
            by_key[key] = namespace
            namespace.resource_version = resumed.get(key, "")
            if not namespace.resource_version:
                troubled |= _judge(namespace, namespace.list(), task_id=task_id)
            watch(namespace)
        for change in watches.changes(until=until):
            namespace = by_key[change.cluster_name, change.namespace]
            namespace.resource_version = change.resource_version or namespace.resource_version
            if change.expired:
                troubled |= _judge(namespace, namespace.list(), task_id=task_id)
                watch(namespace)
            elif change.trouble:
                # Shown on its targets; the next task resumes the watch.
                looks = dict.fromkeys(namespace.targets, _Look(trouble=change.trouble))
                troubled |= _judge(namespace, looks, task_id=task_id)
            elif change.name in namespace.targets:
                look = _look_from(namespace.targets[change.name], change.deployment)
                troubled |= _judge(namespace, {change.name: look}, task_id=task_id)
            if not any(n.targets for n in namespaces):
                return None
    # The watching time is over: a rollout whose own deadline passed fails here.
    for namespace in namespaces:
        _judge(namespace, dict.fromkeys(namespace.targets, _Look()), task_id=task_id)
    rolling = [t.pk for n in namespaces for t in n.targets.values()]
    if not rolling:
        return None
    return Following(
        target_ids=rolling,
        resume=[[*key, n.resource_version] for key, n in by_key.items() if n.resource_version],
        delay=rollout_poll_seconds() if troubled else 0.0,
    )


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
