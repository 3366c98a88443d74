"""Before a restart (the worker): look at each target's Deployment, as kubectl does before
`rollout restart` (is it there, is it paused?), the looks of a batch side by side, and hand
the targets on in groups as their looks end."""

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass

from django.conf import settings

from . import kube
from .exceptions import (
    DEPLOYMENT_DOES_NOT_EXIST,
    DeploymentNotFound,
    KubeError,
    operation_failed_message,
)
from .models import KubernetesCluster, RedeployTarget

logger = logging.getLogger(__name__)


def failure_message(error: KubeError) -> str:
    if isinstance(error, DeploymentNotFound):
        return DEPLOYMENT_DOES_NOT_EXIST
    return operation_failed_message(error.message)


@dataclass
class Pending:
    """A target to restart, its cluster, and the check of its Deployment (is it paused?) going
    on in the background: a GET of it, or a LIST of its namespace shared with others."""

    target: RedeployTarget
    cluster: KubernetesCluster
    look: Future
    listed: bool = False  # the look is a LIST: {name: RestartCheck} of the namespace
    check: kube.RestartCheck | None = None  # once the look said it may be restarted

    def refusal(self) -> str:
        """Waits for the look; why the Deployment must not be restarted, or "" (it may)."""
        try:
            check = self.look.result()
        except KubeError as error:
            return failure_message(error)
        except Exception as error:
            # Unforeseen (a bug, the client): nothing was sent, so the target just fails.
            logger.exception("Reading the Deployment of target %s failed", self.target.pk)
            return operation_failed_message(str(error))
        if self.listed:
            check = check.get(self.target.deployment_name)
            if check is None:
                return DEPLOYMENT_DOES_NOT_EXIST
        if check.paused:
            return operation_failed_message(kube.PAUSED_MESSAGE)
        self.check = check
        return ""


def where(target: RedeployTarget) -> tuple[str, str, str]:
    return target.cluster_name, target.namespace, target.deployment_name


class Looks:
    """One run's looks at its Deployments, started as soon as the run knows where they are
    (while it still writes their targets): one LIST for a namespace where it restarts many
    Deployments (KUBERNETES_LIST_FROM or more: cheaper for the API server than as many GETs),
    else one GET each."""

    def __init__(self):
        self.clusters: dict[str, KubernetesCluster] = {}
        # (cluster, namespace, name) -> (the look, whether it is a LIST of the namespace)
        self.started: dict[tuple[str, str, str], tuple[Future, bool]] = {}

    def begin(self, where: Sequence[tuple[str, str, str]]) -> None:
        """Start the looks not started yet; none in a cluster that is gone (see _resume)."""
        where = [item for item in where if item not in self.started]
        unknown = {cluster_name for cluster_name, _, _ in where} - set(self.clusters)
        self.clusters |= KubernetesCluster.objects.in_bulk(unknown, field_name="name")
        by_namespace = defaultdict(list)
        for cluster_name, namespace, name in where:
            if cluster_name in self.clusters:
                by_namespace[cluster_name, namespace].append(name)
        for (cluster_name, namespace), names in by_namespace.items():
            cluster = self.clusters[cluster_name]
            if len(names) >= settings.KUBERNETES_LIST_FROM:
                listing = kube.in_background(
                    kube.check_restarts_in, cluster=cluster, namespace=namespace
                )
                for name in names:
                    self.started[cluster_name, namespace, name] = (listing, True)
                continue
            for name in names:
                look = kube.in_background(
                    kube.check_restart, cluster=cluster, namespace=namespace, name=name
                )
                self.started[cluster_name, namespace, name] = (look, False)

    def pending(self, targets: list[RedeployTarget]) -> list[Pending]:
        """The targets with their looks (started now when they were not yet)."""
        self.begin([where(target) for target in targets])
        return [
            Pending(target, self.clusters[target.cluster_name], *self.started[where(target)])
            for target in targets
            if where(target) in self.started
        ]


def as_looked(pending: list[Pending]) -> Iterator[list[Pending]]:
    """The pending targets in groups, as their looks end: the restarts in a cluster (or a
    namespace) that answers never wait for one that is slow or away."""
    waiting = defaultdict(list)
    for item in pending:
        waiting[item.look].append(item)
    while waiting:
        done, _ = wait(waiting, return_when=FIRST_COMPLETED)
        yield [item for look in done for item in waiting.pop(look)]
