"""Redeploy writes: request a redeploy, run it (the authoritative check and the restart), follow
its rollout; register clusters (from kubeconfigs, or the one the product runs in) and
applications from Deployments.

Each function writes its audit events in the transaction of the change. Kubernetes calls happen
between transactions (never while a row lock is held), through redeploy.kube only.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from cratos.exceptions import NotFound, ServiceUnavailable, ValidationFailed
from tickets.models import Ticket, TicketEntry
from tickets.notifications import notify_redeploy_finished
from tickets.services import settle_entry

from . import authorization, kube
from .audit import Action, Outcome, record_event
from .exceptions import (
    DEPLOYMENT_DOES_NOT_EXIST,
    UNAUTHORIZED_ACCESS,
    DeploymentNotFound,
    KubeError,
    KubeTransientError,
    RestartInDoubt,
    UnauthorizedAccess,
    binding_missing_message,
    operation_failed_message,
)
from .models import (
    Application,
    DeploymentBinding,
    KubernetesCluster,
    RedeployOperation,
    RedeployTarget,
)
from .rules import redeploy_refusal
from .validators import validate_dns1123_label, validate_dns1123_subdomain

logger = logging.getLogger(__name__)

DEFAULT_APPLICATION_LABEL = "app.kubernetes.io/name"
# Publishing the task: a short, bounded retry, so a broker outage answers the user at once.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
QUEUE_DOWN = (
    "The task queue is not answering; the redeploy was not started and your authorization is "
    "untouched. Try again in a moment."
)

OperationState = RedeployOperation.State
TargetState = RedeployTarget.State


def rollout_poll_seconds() -> float:
    """Seconds between two looks at a rollout (REDEPLOY_ROLLOUT_POLL_SECONDS, default 2)."""
    return settings.REDEPLOY_ROLLOUT_POLL_SECONDS


# -- request -------------------------------------------------------------------------------


def _clean_request(
    *, application_name: str, namespace: str, deployment_name: str, cluster_name: str | None
) -> tuple[str, str, str, str]:
    application_name = (application_name or "").strip()
    namespace = (namespace or "").strip()
    deployment_name = (deployment_name or "").strip()
    missing = [
        label
        for label, value in (
            ("application name", application_name),
            ("namespace", namespace),
            ("deployment name", deployment_name),
        )
        if not value
    ]
    if missing:
        raise ValidationFailed(f"Give the {', '.join(missing)}.")
    try:
        validate_dns1123_label(namespace)
        validate_dns1123_subdomain(deployment_name)
    except ValidationError as error:
        raise ValidationFailed(error.messages[0]) from None
    return application_name, namespace, deployment_name, (cluster_name or "").strip()


def request_redeploy(
    *,
    user,
    application_name: str,
    namespace: str,
    deployment_name: str,
    cluster_name: str | None = None,
    request_ip: str | None = None,
) -> RedeployOperation:
    """Queue a redeploy for a user holding a live authorization for the application.

    The fast check only: the task consumes the authorization (the authoritative check). A
    refusal is audited in its own committed transaction before it is raised, so call this
    outside any transaction (as views do). Without a cluster every cluster where the binding
    exists is restarted, each as a target of the operation. The task is queued once the
    operation is committed; a broker that does not answer fails the operation and raises
    ServiceUnavailable, the authorization untouched.
    Raises PermissionRefused, UnauthorizedAccess, ValidationFailed, ServiceUnavailable.
    """
    application_name, namespace, deployment_name, cluster_name = _clean_request(
        application_name=application_name,
        namespace=namespace,
        deployment_name=deployment_name,
        cluster_name=cluster_name,
    )
    where = {
        "application_name": application_name,
        "cluster_name": cluster_name,
        "namespace": namespace,
        "deployment_name": deployment_name,
    }
    refusal = redeploy_refusal(user=user)
    if refusal is None:
        try:
            token = authorization.live_token(
                username=user.get_username(), application_name=application_name
            )
        except ServiceUnavailable as unavailable:
            refusal = unavailable
        else:
            refusal = UnauthorizedAccess() if token is None else None
    if refusal is not None:
        with transaction.atomic():
            record_event(
                action=Action.REDEPLOY_REFUSED,
                actor=user,
                outcome=Outcome.FAILURE,
                message=refusal.message,
                request_ip=request_ip,
                **where,
            )
        raise refusal
    with transaction.atomic():
        operation = RedeployOperation.objects.create(
            requested_by=user, request_ip=request_ip, celery_task_id=str(uuid.uuid4()), **where
        )
        record_event(
            action=Action.REDEPLOY_REQUESTED,
            actor=user,
            outcome=Outcome.INFO,
            operation=operation,
            request_ip=request_ip,
            celery_task_id=operation.celery_task_id,
            **where,
        )
        transaction.on_commit(lambda: _enqueue(operation=operation))
    return operation


def _enqueue(*, operation: RedeployOperation) -> None:
    from .tasks import run_redeploy as run_redeploy_task  # the tasks module imports this one

    try:
        run_redeploy_task.apply_async(
            kwargs={"operation_id": str(operation.pk)},
            task_id=operation.celery_task_id,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except OperationalError as error:
        logger.error("Cannot queue redeploy %s: %s", operation.pk, error)
        with transaction.atomic():
            operation = RedeployOperation.objects.select_for_update().get(pk=operation.pk)
            if operation.state == OperationState.QUEUED:
                operation.state = OperationState.FAILED
                operation.message = QUEUE_DOWN
                operation.finished_at = timezone.now()
                operation.save(update_fields=["state", "message", "finished_at"])
                _operation_event(
                    operation,
                    action=Action.REDEPLOY_FAILED,
                    outcome=Outcome.FAILURE,
                    message=QUEUE_DOWN,
                )
        raise ServiceUnavailable(QUEUE_DOWN) from error


def give_up_redeploy(*, operation_id, message: str, task_id: str = "") -> None:
    """The task's last try failed (Redis away): a redeploy that never started fails with the
    reason; its authorization was never taken. One that started is left to its targets."""
    with transaction.atomic():
        operation = _locked_operation(operation_id)
        if operation.state != OperationState.QUEUED:
            return
        operation.state = OperationState.FAILED
        operation.message = message
        operation.finished_at = timezone.now()
        operation.save(update_fields=["state", "message", "finished_at"])
        _operation_event(
            operation,
            action=Action.REDEPLOY_FAILED,
            outcome=Outcome.FAILURE,
            message=message,
            task_id=task_id,
        )


# -- audit helpers -------------------------------------------------------------------------


def _operation_event(
    operation: RedeployOperation,
    *,
    action: str,
    outcome: str,
    message: str,
    task_id: str = "",
    **where,
) -> None:
    """An audit event of the operation; `where` narrows it to one target's fields."""
    record_event(
        action=action,
        actor=operation.requested_by,
        outcome=outcome,
        ticket=operation.ticket,
        operation=operation,
        application_name=operation.application_name,
        message=message,
        celery_task_id=task_id or operation.celery_task_id,
        **{
            "cluster_name": operation.cluster_name,
            "namespace": operation.namespace,
            "deployment_name": operation.deployment_name,
            **where,
        },
    )


def _target_event(
    target: RedeployTarget, *, action: str, outcome: str, message: str, task_id: str
) -> None:
    _operation_event(
        target.operation,
        action=action,
        outcome=outcome,
        message=message,
        task_id=task_id,
        cluster_name=target.cluster_name,
        namespace=target.namespace,
        deployment_name=target.deployment_name,
        generation=target.generation,
        resource_version=target.resource_version,
    )


# -- the task: consume, restart ------------------------------------------------------------


def _locked_operation(operation_id) -> RedeployOperation:
    return (
        RedeployOperation.objects.select_for_update(of=("self",))
        .select_related("requested_by", "ticket")
        .get(pk=operation_id)
    )


def _locked_target(target_id: int) -> RedeployTarget:
    return (
        RedeployTarget.objects.select_for_update(of=("self",))
        .select_related("operation__requested_by", "operation__ticket")
        .get(pk=target_id)
    )


def _bindings(operation: RedeployOperation) -> list[DeploymentBinding]:
    bindings = DeploymentBinding.objects.select_related("cluster").filter(
        application__name=operation.application_name,
        namespace=operation.namespace,
        deployment_name=operation.deployment_name,
    )
    if operation.cluster_name:
        bindings = bindings.filter(cluster__name=operation.cluster_name)
    return list(bindings.order_by("cluster__name"))


def _start(*, operation_id, task_id: str) -> RedeployOperation:
    """Steps 1-2: consume the authorization, find the bindings, create the targets.

    Only a QUEUED operation starts; a redelivered task finds it RUNNING or finished.
    """
    token = None
    try:
        with transaction.atomic():
            operation = _locked_operation(operation_id)
            if operation.state != OperationState.QUEUED:
                return operation
            bindings = _bindings(operation)
            now = timezone.now()
            operation.celery_task_id = task_id or operation.celery_task_id
            operation.started_at = now
            # GETDEL: of many racing tasks on one authorization exactly one gets it. Should this
            # transaction then not commit, the `except` below puts the authorization back.
            token = authorization.consume(
                username=operation.requested_by.get_username(),
                application_name=operation.application_name,
            )
            if token is None:
                operation.state = OperationState.FAILED
                operation.message = UNAUTHORIZED_ACCESS
                operation.finished_at = now
                operation.save()
                _operation_event(
                    operation,
                    action=Action.REDEPLOY_FAILED,
                    outcome=Outcome.FAILURE,
                    message=UNAUTHORIZED_ACCESS,
                )
                return operation
            operation.state = OperationState.RUNNING
            operation.authorization_expires_at = token.expires
            operation.ticket = Ticket.objects.get(pk=token.ticket_id)
            operation.save()
            _operation_event(
                operation,
                action=Action.AUTHORIZATION_CONSUMED,
                outcome=Outcome.SUCCESS,
                message=f"Authorization of ticket {token.ticket_no} consumed "
                f"({token.seconds_left()} s were left)",
            )
            _operation_event(
                operation,
                action=Action.REDEPLOY_STARTED,
                outcome=Outcome.INFO,
                message=f"Restarting {len(bindings)} Deployment(s)",
            )
            if not bindings:
                target = RedeployTarget.objects.create(
                    operation=operation,
                    ticket=operation.ticket,
                    cluster_name=operation.cluster_name,
                    namespace=operation.namespace,
                    deployment_name=operation.deployment_name,
                    state=TargetState.FAILED,
                    success=False,
                    message=binding_missing_message(operation.deployment_name),
                    operated_at=now,
                    finished_at=now,
                )
                _target_event(
                    target,
                    action=Action.REDEPLOY_FAILED,
                    outcome=Outcome.FAILURE,
                    message=target.message,
                    task_id=operation.celery_task_id,
                )
            for binding in bindings:
                RedeployTarget.objects.create(
                    operation=operation,
                    ticket=operation.ticket,
                    binding=binding,
                    cluster_name=binding.cluster.name,
                    namespace=binding.namespace,
                    deployment_name=binding.deployment_name,
                )
            return operation
    except BaseException:
        if token is not None:
            authorization.restore(token=token)
        raise


def _failure_message(error: KubeError) -> str:
    if isinstance(error, DeploymentNotFound):
        return DEPLOYMENT_DOES_NOT_EXIST
    return operation_failed_message(error.message)


def _fail_target(target_id: int, *, message: str, task_id: str, keep_restart: bool) -> None:
    """The target failed. `keep_restart`: the restart was (or may have been) applied."""
    with transaction.atomic():
        target = _locked_target(target_id)
        if target.is_finished:
            return
        now = timezone.now()
        target.state = TargetState.FAILED
        target.success = False
        target.message = message
        target.operated_at = target.operated_at or now
        target.finished_at = now
        if not keep_restart:
            target.restarted_at = ""
        target.save()
        _target_event(
            target,
            action=Action.REDEPLOY_FAILED,
            outcome=Outcome.FAILURE,
            message=message,
            task_id=task_id,
        )


def _deadline(progress_deadline_seconds: int):
    # A little beyond the Deployment's own deadline, so the controller's verdict comes first.
    grace = 2 * rollout_poll_seconds()
    return timezone.now() + timedelta(seconds=progress_deadline_seconds + grace)


def _rolling(
    target_id: int, *, restart: kube.Restart, progress_deadline_seconds: int, task_id: str
) -> None:
    with transaction.atomic():
        target = _locked_target(target_id)
        target.state = TargetState.ROLLING
        target.restarted_at = restart.restarted_at
        target.generation = restart.generation
        target.resource_version = restart.resource_version
        target.operated_at = timezone.now()
        target.progress_deadline_seconds = progress_deadline_seconds
        target.deadline_at = _deadline(progress_deadline_seconds)
        target.message = f"Restarted (restartedAt {restart.restarted_at}); rolling out..."
        target.save()
        _target_event(
            target,
            action=Action.REDEPLOY_SUCCEEDED,
            outcome=Outcome.SUCCESS,
            message=f"Restart applied: restartedAt {restart.restarted_at}",
            task_id=task_id,
        )


def _cluster_of(target: RedeployTarget) -> KubernetesCluster | None:
    return KubernetesCluster.objects.filter(name=target.cluster_name).first()


def _resume_restart(target: RedeployTarget, cluster: KubernetesCluster, *, task_id: str) -> None:
    """A redelivered task met a target whose PATCH was already sent: look, never PATCH again."""
    try:
        deployment = kube.get_deployment(
            cluster=cluster, namespace=target.namespace, name=target.deployment_name
        )
    except KubeError as error:
        _fail_target(
            target.pk,
            message=operation_failed_message(
                f"{error.message} (the restart may have been applied; it was not repeated)"
            ),
            task_id=task_id,
            keep_restart=True,
        )
        return
    if kube.restarted_at_of(deployment) != target.restarted_at:
        _fail_target(
            target.pk,
            message=operation_failed_message(
                f"the restart (restartedAt {target.restarted_at}) was interrupted and is not "
                "visible on the Deployment; it was not repeated"
            ),
            task_id=task_id,
            keep_restart=True,
        )
        return
    _rolling(
        target.pk,
        restart=kube.Restart(
            restarted_at=target.restarted_at,
            generation=deployment.metadata.generation,
            resource_version=deployment.metadata.resource_version or "",
        ),
        progress_deadline_seconds=kube.progress_deadline_seconds(deployment),
        task_id=task_id,
    )


def _restart_target(target: RedeployTarget, *, task_id: str) -> None:
    """Steps 3-4 for one target: read the Deployment, refuse a paused one, restart it."""
    cluster = _cluster_of(target)
    if cluster is None:
        _fail_target(
            target.pk,
            message=binding_missing_message(target.deployment_name),
            task_id=task_id,
            keep_restart=False,
        )
        return
    if target.restarted_at:
        _resume_restart(target, cluster, task_id=task_id)
        return
    where = {"cluster": cluster, "namespace": target.namespace, "name": target.deployment_name}
    try:
        deployment = kube.get_deployment(**where)
    except KubeError as error:
        _fail_target(
            target.pk, message=_failure_message(error), task_id=task_id, keep_restart=False
        )
        return
    if kube.is_paused(deployment):
        _fail_target(
            target.pk,
            message=operation_failed_message(kube.PAUSED_MESSAGE),
            task_id=task_id,
            keep_restart=False,
        )
        return
    restarted_at = kube.now_restarted_at()
    # Committed before the PATCH: whatever happens next, a redelivered task sees that the
    # restart was sent and never sends another.
    with transaction.atomic():
        claimed = RedeployTarget.objects.filter(
            pk=target.pk, state=TargetState.PENDING, restarted_at=""
        ).update(restarted_at=restarted_at)
    if not claimed:
        return
    try:
        restart = kube.restart_deployment(**where, restarted_at=restarted_at)
    except RestartInDoubt as error:
        _fail_target(
            target.pk,
            message=operation_failed_message(error.message),
            task_id=task_id,
            keep_restart=True,
        )
        return
    except KubeError as error:
        _fail_target(
            target.pk, message=_failure_message(error), task_id=task_id, keep_restart=False
        )
        return
    _rolling(
        target.pk,
        restart=restart,
        progress_deadline_seconds=kube.progress_deadline_seconds(deployment),
        task_id=task_id,
    )


def _summary(targets: list[RedeployTarget]) -> str:
    if len(targets) == 1:
        return targets[0].message
    return "\n".join(f"{target.cluster_name}: {target.message}" for target in targets)


def _restore(operation: RedeployOperation, *, task_id: str) -> None:
    # Under the ticket's lock (the order settle_entry and revocation take it): a revocation
    # or expiry that landed while the token was out of Redis must not be undone here.
    Ticket.objects.select_for_update().filter(pk=operation.ticket_id).first()
    entry = TicketEntry.objects.filter(
        ticket_id=operation.ticket_id, name=operation.application_name
    ).first()
    if entry is None or entry.state != TicketEntry.State.AUTHORIZED:
        _operation_event(
            operation,
            action=Action.AUTHORIZATION_RESTORED,
            outcome=Outcome.FAILURE,
            message="No restart was applied; the authorization was not put back because it "
            f"was {entry.state.lower() if entry else 'removed'} meanwhile",
            task_id=task_id,
        )
        return
    token = authorization.RedeployToken(
        username=operation.requested_by.get_username(),
        application_name=operation.application_name,
        ticket_id=operation.ticket_id,
        ticket_no=operation.ticket.ticket_no,
        expires=operation.authorization_expires_at,
    )
    # Idempotent (SET NX with the remaining TTL), so a retried conclusion is harmless.
    restored = authorization.restore(token=token)
    if restored:
        message = f"No restart was applied; authorization put back ({token.seconds_left()} s left)"
    else:
        message = "No restart was applied, but the authorization expired meanwhile or was replaced"
    _operation_event(
        operation,
        action=Action.AUTHORIZATION_RESTORED,
        outcome=Outcome.SUCCESS if restored else Outcome.FAILURE,
        message=message,
        task_id=task_id,
    )


def _settle(operation: RedeployOperation, *, success: bool) -> None:
    entry = TicketEntry.objects.filter(
        ticket_id=operation.ticket_id, name=operation.application_name
    ).first()
    # Revoked or expired meanwhile: the entry is settled already and keeps that verdict.
    if entry is not None and entry.state == TicketEntry.State.AUTHORIZED:
        settle_entry(
            entry=entry,
            state=TicketEntry.State.USED,
            actor=operation.requested_by,
            success=success,
        )


def _conclude(*, operation_id, task_id: str) -> None:
    """Close the operation once every target is finished (caller may hold a target lock).

    One approval, one redeploy: once any restart was applied the ticket entry is settled USED
    with the overall result; when none was, the authorization goes back with its remaining TTL.
    """
    with transaction.atomic():
        operation = _locked_operation(operation_id)
        targets = list(operation.targets.order_by("cluster_name", "pk"))
        if operation.is_finished or not targets or not all(t.is_finished for t in targets):
            return
        succeeded = all(target.state == TargetState.SUCCEEDED for target in targets)
        operation.state = OperationState.SUCCEEDED if succeeded else OperationState.FAILED
        operation.message = _summary(targets)
        operation.finished_at = timezone.now()
        operation.save()
        notify_redeploy_finished(operation=operation)
        if any(target.restarted_at for target in targets):
            _settle(operation, success=succeeded)
        else:
            _restore(operation, task_id=task_id)


def run_redeploy(*, operation_id, task_id: str = "") -> RedeployOperation:
    """The task's work (steps 1-5): consume, find the bindings, restart each target.

    Safe to run twice: only a QUEUED operation consumes and starts; a redelivered RUNNING one
    continues with the targets not yet restarted and never sends a second restart.
    Returns the operation with its targets; ROLLING ones are to be followed (check_rollout).
    """
    operation = _start(operation_id=operation_id, task_id=task_id)
    if operation.state == OperationState.RUNNING:
        task_id = task_id or operation.celery_task_id
        for target in operation.targets.filter(state=TargetState.PENDING).order_by("pk"):
            _restart_target(target, task_id=task_id)
        _conclude(operation_id=operation.pk, task_id=task_id)
    return (
        RedeployOperation.objects.select_related("requested_by", "ticket")
        .prefetch_related("targets")
        .get(pk=operation_id)
    )


# -- following the rollout -------------------------------------------------------------------


def check_rollout(*, target_id: int, task_id: str = "") -> float | None:
    """One non-blocking look at a target's rollout (step 6).

    Returns the seconds after which to look again, or None once the target is finished: kubectl
    would call the rollout complete or failed, or its progress deadline passed. Transient API
    errors only postpone the verdict (until the deadline).
    """
    target = RedeployTarget.objects.get(pk=target_id)
    if target.state != TargetState.ROLLING:
        return None
    cluster = _cluster_of(target)
    status, failure, trouble = None, "", ""
    if cluster is None:
        failure = binding_missing_message(target.deployment_name)
    else:
        try:
            status = kube.rollout_status(
                kube.get_deployment(
                    cluster=cluster, namespace=target.namespace, name=target.deployment_name
                )
            )
        except KubeTransientError as error:
            trouble = error.message
        except KubeError as error:
            failure = _failure_message(error)
    with transaction.atomic():
        target = _locked_target(target_id)
        if target.state != TargetState.ROLLING:
            return None
        now = timezone.now()
        if status is not None:
            progressed = target.updated_replicas is not None and (
                status.updated_replicas > target.updated_replicas
                or status.available_replicas > (target.available_replicas or 0)
            )
            if progressed:
                target.deadline_at = _deadline(status.progress_deadline_seconds)
            target.replicas = status.replicas
            target.updated_replicas = status.updated_replicas
            target.available_replicas = status.available_replicas
            target.message = status.message
        if status is not None and status.state == kube.Rollout.COMPLETE:
            target.state, target.success = TargetState.SUCCEEDED, True
        elif failure or (status is not None and status.state == kube.Rollout.FAILED):
            target.state, target.success = TargetState.FAILED, False
            target.message = failure or status.message
        elif target.deadline_at is not None and now >= target.deadline_at:
            target.state, target.success = TargetState.FAILED, False
            target.message = f'deployment "{target.deployment_name}" exceeded its progress deadline'
            if trouble:
                target.message += f" (last error: {trouble})"
        else:
            if trouble:
                target.message = f"{trouble} (looking again)"
            target.save()
            return rollout_poll_seconds()
        target.finished_at = now
        target.save()
        _target_event(
            target,
            action=Action.ROLLOUT_COMPLETE if target.success else Action.ROLLOUT_FAILED,
            outcome=Outcome.SUCCESS if target.success else Outcome.FAILURE,
            message=target.message,
            task_id=task_id,
        )
        _conclude(operation_id=target.operation_id, task_id=task_id)
    return None


# -- clusters and applications ---------------------------------------------------------------


def _cluster_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the cluster a name.")
    return name


def _register_cluster(
    *, name: str, actor, source: str, **connection
) -> tuple[KubernetesCluster, bool]:
    """Create or update the cluster NAME with every `connection` field, and audit it."""
    cluster, created = KubernetesCluster.objects.select_for_update().get_or_create(name=name)
    for field, value in connection.items():
        setattr(cluster, field, value)
    cluster.save()
    record_event(
        action=Action.CLUSTER_IMPORTED,
        actor=actor,
        cluster_name=name,
        message=f"{'Registered' if created else 'Updated'} {source}",
    )
    return cluster, created


@transaction.atomic
def import_cluster(
    *, name: str, kubeconfig_path: str | Path, context: str | None = None, actor=None
) -> tuple[KubernetesCluster, bool]:
    """Register or update the cluster NAME from one context of a kubeconfig file."""
    name = _cluster_name(name)
    credentials = kube.read_kubeconfig(Path(kubeconfig_path), context)
    return _register_cluster(
        name=name,
        actor=actor,
        source=f"from {kubeconfig_path}: {credentials.server} ({credentials.kind})",
        server=credentials.server,
        ca_data=credentials.ca_data,
        insecure_skip_tls_verify=credentials.insecure_skip_tls_verify,
        token=credentials.token,
        client_cert_data=credentials.client_cert_data,
        client_key_data=credentials.client_key_data,
        kubeconfig=credentials.kubeconfig,
        kubeconfig_context=credentials.kubeconfig_context,
        in_cluster=False,
    )


@transaction.atomic
def import_in_cluster(*, name: str, actor=None) -> tuple[KubernetesCluster, bool]:
    """Register or update the cluster NAME as the one the product runs in: reached with the
    pod's ServiceAccount, so credentials stored by an earlier import are dropped."""
    return _register_cluster(
        name=_cluster_name(name),
        actor=actor,
        source="as in-cluster (the pod's ServiceAccount)",
        server="",
        ca_data="",
        insecure_skip_tls_verify=False,
        token="",
        client_cert_data="",
        client_key_data="",
        kubeconfig="",
        kubeconfig_context="",
        in_cluster=True,
    )


@dataclass
class SyncSummary:
    cluster_name: str
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    deployments: int = 0
    applications_created: int = 0
    applications_updated: int = 0
    applications_unchanged: int = 0
    bindings_created: int = 0
    bindings_present: int = 0

    def __str__(self) -> str:
        where = f" (namespaces {', '.join(self.namespaces)})" if self.namespaces else ""
        return (
            f"Cluster {self.cluster_name}{where}: {self.deployments} Deployment(s); applications "
            f"{self.applications_created} created, {self.applications_updated} updated, "
            f"{self.applications_unchanged} unchanged; bindings {self.bindings_created} "
            f"created, {self.bindings_present} already present."
        )


def _synced_tags(current: list[dict], labels: dict[str, str]) -> list[dict]:
    """The application's tags with the labels' values set (other tags kept, order kept)."""
    tags = [dict(tag) for tag in current]
    for key, value in labels.items():
        tag = next((tag for tag in tags if tag["key"] == key), None)
        if tag is None:
            tags.append({"key": key, "value": value})
        else:
            tag["value"] = value
    return tags


def _namespaces(namespaces: Sequence[str]) -> tuple[str, ...]:
    """The namespaces, stripped, validated and without repeats (in the order given)."""
    cleaned = tuple(dict.fromkeys(namespace.strip() for namespace in namespaces))
    for namespace in cleaned:
        try:
            validate_dns1123_label(namespace)
        except ValidationError as error:
            raise ValidationFailed(f"Namespace {namespace!r}: {error.messages[0]}") from None
    return cleaned


def sync_applications(
    *,
    cluster_name: str,
    label: str = DEFAULT_APPLICATION_LABEL,
    namespaces: Sequence[str] = (),
    actor=None,
) -> SyncSummary:
    """One application per distinct value of `label` among the cluster's Deployments, tagged
    with their labels, and a binding per (namespace, Deployment). Idempotent; never deletes.

    With `namespaces`, only those are listed, one namespaced LIST each: what a ServiceAccount
    with namespaced Roles (deploy/) may do. Without, every namespace in one LIST.
    """
    namespaces = _namespaces(namespaces)
    cluster = KubernetesCluster.objects.filter(name=cluster_name).first()
    if cluster is None:
        raise NotFound(f"No cluster is named {cluster_name}.")
    deployments = sorted(
        kube.list_deployments(cluster=cluster, label_selector=label, namespaces=namespaces),
        key=lambda d: (d.metadata.namespace, d.metadata.name),
    )
    by_application: dict[str, list] = {}
    for deployment in deployments:
        value = (deployment.metadata.labels or {}).get(label, "")
        if value:
            by_application.setdefault(value, []).append(deployment)
    summary = SyncSummary(
        cluster_name=cluster.name, namespaces=namespaces, deployments=len(deployments)
    )
    with transaction.atomic():
        for name, items in sorted(by_application.items()):
            labels: dict[str, str] = {}
            for deployment in items:
                for key, value in (deployment.metadata.labels or {}).items():
                    if key != label:
                        labels.setdefault(key, value)
            application, created = Application.objects.select_for_update().get_or_create(
                name=name,
                defaults={
                    "description": f"Synced from cluster {cluster.name}",
                    "tags": _synced_tags([], labels),
                },
            )
            if created:
                summary.applications_created += 1
            else:
                tags = _synced_tags(application.tags, labels)
                if tags == application.tags:
                    summary.applications_unchanged += 1
                else:
                    application.tags = tags
                    application.save(update_fields=["tags", "updated_at"])
                    summary.applications_updated += 1
            for deployment in items:
                _, created = DeploymentBinding.objects.get_or_create(
                    application=application,
                    cluster=cluster,
                    namespace=deployment.metadata.namespace,
                    deployment_name=deployment.metadata.name,
                )
                if created:
                    summary.bindings_created += 1
                else:
                    summary.bindings_present += 1
        record_event(
            action=Action.APPLICATIONS_SYNCED,
            actor=actor,
            cluster_name=cluster.name,
            message=f"{summary} (label {label})",
        )
    return summary
