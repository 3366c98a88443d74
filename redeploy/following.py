"""Following what a granted action set in motion, in the worker, by watching as `kubectl rollout
status` does: a rollout (rollouts.py), a deleted pod's replacement (pod_deletion_follows.py).

The targets are followed in groups, one watch each (a namespace's Deployments, a Deployment's
pods). A group is LISTed first (the state its watch starts from, as kubectl's list-then-watch),
and again when the API server compacted its history past our resourceVersion (410 Gone). One
task watches every group at once, for at most REDEPLOY_ROLLOUT_WATCH_SECONDS (less when a
target's deadline comes first); the next task resumes each watch where it stopped, so no
worker is held for a whole rollout and no change is missed.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from . import kube
from .exceptions import KubeError, KubeTransientError, binding_missing_message
from .models import KubernetesCluster
from .operations import rollout_poll_seconds
from .restarts import failure_message

logger = logging.getLogger(__name__)


@dataclass
class Look:
    """What one look at a target found: what its action's judge reads (`seen`: a rollout's
    status, a Deployment's pods), or why there is nothing to read."""

    seen: object = None
    failure: str = ""  # the target fails
    trouble: str = ""  # a transient error: look again later


@dataclass
class Following:
    """What the next follow-up task carries: the targets still followed, where to resume each
    group's watch ([*its key, resourceVersion]), and how long to wait first (after trouble)."""

    target_ids: list[int]
    resume: list[list[str]] = field(default_factory=list)
    delay: float = 0.0


def trouble_look(error: Exception) -> Look:
    """A LIST that failed, as a look at each of its targets."""
    if isinstance(error, KubeTransientError):
        return Look(trouble=error.message)
    if isinstance(error, KubeError):
        return Look(failure=failure_message(error))
    logger.exception("Listing what a follow-up watches failed")
    return Look(trouble=str(error))


class Group:
    """The followed targets one watch serves, by the name their looks are filed under.
    Each action says what to LIST and watch, how a change reads and how a target is judged."""

    # A watched change says all a look needs (a Deployment does; one pod of many does not):
    # a next task may resume the watch without a LIST first.
    resumes = True

    def __init__(self, key: tuple[str, ...], cluster, targets: dict[str, object]):
        self.key, self.cluster, self.targets = key, cluster, targets
        self.resource_version = ""

    def list(self) -> dict[str, Look]:
        """One LIST: a look at each target; sets the resourceVersion the watch resumes after."""
        raise NotImplementedError

    def watched(self) -> kube.Watched | None:
        """What to watch; None when there is nothing to watch from (the next task tries)."""
        raise NotImplementedError

    def looks_at(self, change: kube.Change) -> dict[str, Look]:
        """The looks a watched change (or bookmark) gives."""
        raise NotImplementedError

    def judge(self, target, look: Look, *, task_id: str) -> bool:
        """Settle what the look says; True when the target finished."""
        raise NotImplementedError

    def standing(self) -> dict[str, Look]:
        """The looks once the watching time is over (a target past its deadline fails)."""
        return dict.fromkeys(self.targets, Look())

    def listed(self) -> dict[str, Look]:
        if self.cluster is None:
            return {
                name: Look(failure=binding_missing_message(target.deployment_name))
                for name, target in self.targets.items()
            }
        try:
            return self.list()
        except Exception as error:
            return dict.fromkeys(self.targets, trouble_look(error))


def grouped(targets: Sequence, *, key: Callable) -> list[tuple[KubernetesCluster | None, list]]:
    """The targets by `key` (a tuple, the cluster's name first), each group with its cluster
    (None when it is no longer registered)."""
    clusters = KubernetesCluster.objects.in_bulk(
        {target.cluster_name for target in targets}, field_name="name"
    )
    groups = defaultdict(list)
    for target in targets:
        groups[key(target)].append(target)
    return [(clusters.get(found[0]), group) for found, group in groups.items()]


def _judge(group: Group, looks: dict[str, Look], *, task_id: str) -> bool:
    """Judge the targets looked at; True when one is still followed but the look was
    troubled. Finished targets leave the group."""
    troubled = False
    for name, look in looks.items():
        target = group.targets[name]
        try:
            finished = group.judge(target, look, task_id=task_id)
        except DatabaseError:
            # The connection is lost for this task: it is retried (a new task, a new
            # connection), resuming the watches from the start.
            raise
        except Exception:
            # One target's unforeseen trouble must not end the others' following.
            logger.exception("Judging target %s failed; looking again", target.pk)
            finished, look = False, Look(trouble="judging failed")
        if finished:
            del group.targets[name]
        troubled = troubled or (not finished and bool(look.trouble))
    return troubled


def check(groups: Sequence[Group], *, task_id: str) -> dict[int, float]:
    """One look at each group's targets (one LIST each), for the reconciler: {target id:
    seconds until the next look} for those still followed."""
    for group in groups:
        _judge(group, group.listed(), task_id=task_id)
    return {t.pk: rollout_poll_seconds() for g in groups for t in g.targets.values()}


def _watch_seconds(groups: Sequence[Group]) -> float:
    """This task's watching time: the setting's, or less when a target's deadline (of ours:
    the controller's verdict comes as a change) falls within it."""
    seconds = settings.REDEPLOY_ROLLOUT_WATCH_SECONDS
    now = timezone.now()
    for group in groups:
        for target in group.targets.values():
            if target.deadline_at is not None:
                seconds = min(seconds, (target.deadline_at - now).total_seconds() + 1)
    return max(1.0, seconds)


def follow(
    groups: Sequence[Group], *, resume: Sequence[Sequence[str]], task_id: str
) -> Following | None:
    """Follow the groups' targets for one task's watching time (see the module docstring).

    Returns what the next task carries, or None once every target finished.
    """
    resumed = {tuple(item[:-1]): item[-1] for item in resume}
    by_key = {group.key: group for group in groups}
    troubled = False
    until = time.monotonic() + _watch_seconds(groups)
    with kube.Watches() as watches:

        def watch(group: Group) -> None:
            watched = group.watched() if group.targets and group.cluster is not None else None
            if watched is not None:
                watches.start(
                    key=group.key,
                    watched=watched,
                    resource_version=group.resource_version,
                    seconds=until - time.monotonic(),
                )

        for group in groups:
            group.resource_version = resumed.get(group.key, "") if group.resumes else ""
            if not group.resource_version:
                troubled |= _judge(group, group.listed(), task_id=task_id)
            watch(group)
        for change in watches.changes(until=until):
            group = by_key[change.key]
            group.resource_version = change.resource_version or group.resource_version
            if change.expired:
                troubled |= _judge(group, group.listed(), task_id=task_id)
                watch(group)
            elif change.trouble:
                # Shown on its targets; the next task resumes the watch.
                looks = dict.fromkeys(group.targets, Look(trouble=change.trouble))
                troubled |= _judge(group, looks, task_id=task_id)
            else:
                troubled |= _judge(group, group.looks_at(change), task_id=task_id)
            if not any(g.targets for g in groups):
                return None
    # The watching time is over: a target whose own deadline passed fails here.
    for group in groups:
        _judge(group, group.standing(), task_id=task_id)
    followed = [t.pk for g in groups for t in g.targets.values()]
    if not followed:
        return None
    return Following(
        target_ids=followed,
        resume=[
            [*key, g.resource_version]
            for key, g in by_key.items()
            if g.resumes and g.resource_version
        ],
        delay=rollout_poll_seconds() if troubled else 0.0,
    )
