"""Running a pod deletion (the worker): start it, pick the pods among the Deployment's own,
claim each deletion and DELETE it; pod_deletion_follows.py follows until the replacements are
Ready.

Only a QUEUED operation starts (its targets, one per pod named, written in one transaction);
only a target whose deletion nobody claimed is deleted. The claim (`deleted`, committed before
the DELETE) makes a second run harmless: a redelivered task finds a claimed target and follows
it instead of deleting again. The DELETE carries the pod's uid as a precondition, so a pod
replaced under the same name since it was picked is never the one deleted.
"""

import logging

from django.db import transaction
from django.utils import timezone

from cratos.audit.recorder import Action, Outcome, record_events

from . import kube
from .exceptions import KubeError, KubeTransientError, binding_missing_message
from .models import KubernetesCluster, PodDeletion, PodDeletionTarget
from .operations import locked_target, operation_event, rollout_deadline
from .pod_deletion_ends import (
    conclude,
    fail_target,
    locked_operation,
    target_event,
)
from .restarts import failure_message
from .selectors import bindings_matching

logger = logging.getLogger(__name__)

OperationState = PodDeletion.State
TargetState = PodDeletionTarget.State

SEVERAL_CLUSTERS = "The application runs in several clusters: name the cluster of its pods"


def _start(*, operation_id, task_id: str) -> None:
    """A QUEUED operation RUNNING, with a target per pod named (failed ones when the binding is
    missing or ambiguous) and its audit events."""
    with transaction.atomic():
        operation = locked_operation(operation_id)
        if operation.state != OperationState.QUEUED:
            return
        now = timezone.now()
        operation.state = OperationState.RUNNING
        operation.started_at = now
        operation.celery_task_id = task_id or operation.celery_task_id
        bindings = list(
            bindings_matching(
                application_name=operation.application_name,
                namespace=operation.namespace,
                deployment_name=operation.deployment_name,
                cluster_name=operation.cluster_name,
            ).select_related("cluster")
        )
        refusal = ""
        if not bindings:
            refusal = binding_missing_message(operation.deployment_name)
        elif len(bindings) > 1:
            refusal = SEVERAL_CLUSTERS
        cluster_name = bindings[0].cluster.name if len(bindings) == 1 else operation.cluster_name
        targets = [
            PodDeletionTarget(
                operation=operation,
                ticket_id=operation.ticket_id,
                cluster_name=cluster_name,
                namespace=operation.namespace,
                deployment_name=operation.deployment_name,
                pod_name=name,
            )
            for name in operation.pod_names
        ]
        for target in targets if refusal else ():
            target.state, target.success, target.message = TargetState.FAILED, False, refusal
            target.operated_at = target.finished_at = now
        operation.save(update_fields=["state", "started_at", "celery_task_id"])
        PodDeletionTarget.objects.bulk_create(targets)
        events = [
            operation_event(
                operation,
                action=Action.POD_DELETION_STARTED,
                outcome=Outcome.INFO,
                message=f"Deleting {len(targets)} pod(s)",
                cluster_name=cluster_name,
            )
        ]
        if refusal:
            events += [
                target_event(
                    target,
                    action=Action.POD_DELETION_FAILED,
                    outcome=Outcome.FAILURE,
                    message=refusal,
                    task_id=task_id,
                )
                for target in targets
            ]
        record_events(*events)
        if refusal:
            conclude(operation_id=operation.pk, task_id=task_id)


def _claim(target: PodDeletionTarget, pod: kube.PodInfo) -> bool:
    """Mark the target's deletion as sent, committed before the DELETE; False when another run
    of the task claimed it first."""
    with transaction.atomic():
        claimed = PodDeletionTarget.objects.filter(
            pk=target.pk, state=TargetState.PENDING, deleted=False
        ).update(deleted=True, pod_uid=pod.uid, operated_at=timezone.now())
    return bool(claimed)


def _deleting(target_id: int, *, deadline, message: str, task_id: str) -> None:
    """The DELETE was (or may have been) applied: follow the replacement until `deadline`."""
    with transaction.atomic():
        target = PodDeletionTarget.objects.select_for_update().get(pk=target_id)
        if target.state != TargetState.PENDING:
            return
        target.state = TargetState.DELETING
        target.deadline_at = deadline
        target.save(update_fields=["state", "deadline_at"])
        record_events(
            target_event(
                target,
                action=Action.POD_DELETION_STARTED,
                outcome=Outcome.INFO,
                message=message,
                task_id=task_id,
            )
        )


def _delete_targets(
    *, cluster: KubernetesCluster, targets: list[PodDeletionTarget], task_id: str
) -> None:
    first = targets[0]
    try:
        deployment = kube.get_deployment(
            cluster=cluster, namespace=first.namespace, name=first.deployment_name
        )
        pods = kube.deployment_pods(
            cluster=cluster, namespace=first.namespace, deployment_name=first.deployment_name
        )
    except KubeError as error:
        for target in targets:
            fail_target(target.pk, message=failure_message(error), task_id=task_id)
        return
    deadline = rollout_deadline(kube.progress_deadline_seconds(deployment))
    for target in targets:
        if target.deleted:
            # Claimed by a run that stopped before it knew: look, never DELETE again.
            _deleting(target.pk, deadline=deadline, message="Looking", task_id=task_id)
            continue
        try:
            (pod,) = kube.pick_pods(pods, [target.pod_name])
        except kube.PodNotFound as error:
            fail_target(target.pk, message=error.message, task_id=task_id)
            continue
        if not _claim(target, pod):
            continue
        try:
            kube.delete_pod(cluster=cluster, namespace=target.namespace, name=pod.name, uid=pod.uid)
        except kube.PodDeleteInDoubt as error:
            # It may have been applied: followed like a deletion that was.
            logger.warning("Pod deletion %s in doubt: %s", target.pk, error.message)
        except kube.PodNotFound as error:
            fail_target(target.pk, message=error.message, task_id=task_id, keep_change=False)
            continue
        except KubeError as error:
            fail_target(
                target.pk, message=failure_message(error), task_id=task_id, keep_change=False
            )
            continue
        except Exception:
            # Unforeseen (a bug, the client) after the DELETE may have gone out: treated as in
            # doubt, so the pod is looked at until the deadline instead of left PENDING.
            logger.exception("Deleting pod %s of target %s failed", pod.name, target.pk)
        _deleting(target.pk, deadline=deadline, message=f"Deleted pod {pod.name}", task_id=task_id)


def run_pod_deletion(*, operation_id, task_id: str) -> PodDeletion:
    """Start the operation (a QUEUED one) and delete its pods not yet claimed; returns it with
    its targets (those DELETING are for pod_deletion_follows)."""
    _start(operation_id=operation_id, task_id=task_id)
    pending = list(
        PodDeletionTarget.objects.filter(
            operation_id=operation_id, state=TargetState.PENDING
        ).order_by("pk")
    )
    if pending:
        cluster = KubernetesCluster.objects.filter(name=pending[0].cluster_name).first()
        if cluster is None:
            for target in pending:
                fail_target(
                    target.pk,
                    message=binding_missing_message(target.deployment_name),
                    task_id=task_id,
                    keep_change=target.deleted,
                )
        else:
            _delete_targets(cluster=cluster, targets=pending, task_id=task_id)
    return PodDeletion.objects.get(pk=operation_id)


def fail_unsent(target_id: int, *, message: str, task_id: str) -> None:
    """The reconciler: a target whose DELETE no run claimed fails, nothing applied. Under the
    target's lock, so a run that claims it meanwhile (a redelivered task) is left to do so."""
    with transaction.atomic():
        if not locked_target(target_id, model=PodDeletionTarget).deleted:
            fail_target(target_id, message=message, task_id=task_id, keep_change=False)


def settle_claimed_deletion(target: PodDeletionTarget, *, task_id: str) -> bool:
    """The reconciler, long after a run claimed this pod's DELETE and stopped before it knew
    how it went: the pod gone, replaced (another uid) or terminating means it was applied, and
    it is followed from now on (True); the same pod still running means it never was (failed,
    the grant given back). The API away is left to the next run, until the grant's lifetime
    is over; any other refusal fails the target as perhaps applied."""
    cluster = KubernetesCluster.objects.filter(name=target.cluster_name).first()
    if cluster is None:
        fail_target(
            target.pk, message=binding_missing_message(target.deployment_name), task_id=task_id
        )
        return False
    where = {"cluster": cluster, "namespace": target.namespace}
    try:
        deployment = kube.get_deployment(**where, name=target.deployment_name)
        pods = kube.deployment_pods(**where, deployment_name=target.deployment_name)
    except KubeError as error:
        expires = target.operation.authorization_expires_at
        if isinstance(error, KubeTransientError) and not (expires and expires <= timezone.now()):
            logger.warning("Pod deletion %s: %s; looking again later", target.pk, error.message)
            return False
        fail_target(target.pk, message=failure_message(error), task_id=task_id)
        return False
    if kube.pod_still_running(pods, name=target.pod_name, uid=target.pod_uid):
        fail_target(
            target.pk,
            message=kube_failed(
                f"the deletion of pod {target.pod_name} never reached it; nothing was applied"
            ),
            task_id=task_id,
            keep_change=False,
        )
        return False
    _deleting(
        target.pk,
        deadline=rollout_deadline(kube.progress_deadline_seconds(deployment)),
        message=f"Pod {target.pod_name} was deleted (found by the reconciler)",
        task_id=task_id,
    )
    return True


def kube_failed(message: str) -> str:
    return failure_message(KubeError(message))
