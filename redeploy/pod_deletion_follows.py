"""Following a pod deletion (the worker) until the pod deleted is gone or terminating and its
Deployment has its desired pods Ready again, or the progress deadline passed: by watching the
Deployment's pods (following.py: a LIST, then a watch from its resourceVersion, bounded per
task, a LIST again after 410 Gone). One pod's change does not say how the others stand, so
every task starts from a LIST of the pods instead of resuming the last task's watch."""

from collections.abc import Sequence

from django.utils import timezone

from . import following, kube
from .following import Following, Look
from .models import KubernetesCluster, PodDeletionTarget
from .pod_deletion_ends import fail_target, finish_target
from .pod_deletion_runs import kube_failed

TargetState = PodDeletionTarget.State


class _DeploymentPods(following.Group):
    """The deleted pods of one Deployment whose replacements are followed, by pod name."""

    resumes = False

    def __init__(self, cluster: KubernetesCluster | None, targets: list[PodDeletionTarget]):
        first = targets[0]
        key = (first.cluster_name, first.namespace, first.deployment_name)
        super().__init__(key, cluster, {target.pod_name: target for target in targets})
        self.pods: kube.PodSet | None = None

    def list(self) -> dict[str, Look]:
        self.pods = kube.pod_set(
            cluster=self.cluster, namespace=self.key[1], deployment_name=self.key[2]
        )
        self.resource_version = self.pods.resource_version
        return self.standing()

    def watched(self) -> kube.Watched | None:
        if self.pods is None:  # never listed: the next task tries again
            return None
        return kube.Watched(
            cluster=self.cluster,
            namespace=self.key[1],
            resource="pods",
            label_selector=self.pods.label_selector,
        )

    def looks_at(self, change: kube.Change) -> dict[str, Look]:
        if not change.name:  # a bookmark, or the watch ended
            return {}
        if not self.pods.changed(change.name, change.obj):
            return self.listed()  # a ReplicaSet never listed: the Deployment rolled meanwhile
        return self.standing()

    def judge(self, target: PodDeletionTarget, look: Look, *, task_id: str) -> bool:
        """Judged on the pods as last seen (a troubled look says nothing new of them)."""
        pods = self.pods
        if look.failure:
            fail_target(target.pk, message=look.failure, task_id=task_id)
            return True
        gone = pods is not None and not pods.still_running(name=target.pod_name, uid=target.pod_uid)
        if gone and pods.ready >= pods.desired:
            message = f"Pod {target.pod_name} deleted; its replacement is Ready"
            finish_target(target.pk, success=True, message=message, task_id=task_id)
            return True
        if timezone.now() < target.deadline_at:
            return False
        if pods is None:
            message = kube_failed(look.trouble or "timed out")
        else:
            message = kube_failed(
                f"the replacement was not Ready within the progress deadline ({pods.ready}/"
                f"{pods.desired} pods Ready)"
            )
        fail_target(target.pk, message=message, task_id=task_id)
        return True


def _deployments(target_ids: Sequence[int]) -> list[_DeploymentPods]:
    targets = PodDeletionTarget.objects.filter(pk__in=target_ids, state=TargetState.DELETING)
    return [
        _DeploymentPods(cluster, group)
        for cluster, group in following.grouped(
            targets.order_by("pk"),
            key=lambda target: (target.cluster_name, target.namespace, target.deployment_name),
        )
    ]


def check_pod_deletions(*, target_ids: Sequence[int], task_id: str) -> dict[int, float]:
    """One look at each DELETING target among `target_ids` (the reconciler's), finishing those
    decided; returns {target id: seconds until the next look} for those still waiting."""
    return following.check(_deployments(target_ids), task_id=task_id)


def follow_pod_deletions(
    *, target_ids: Sequence[int], resume: Sequence[Sequence[str]] = (), task_id: str = ""
) -> Following | None:
    """Follow the DELETING targets for one task's watching time (following.follow).

    Returns what the next task carries, or None once every target finished.
    """
    return following.follow(_deployments(target_ids), resume=resume, task_id=task_id)
