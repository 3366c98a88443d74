"""Asking for a pod deletion (the web process): validate, take the grant, record, enqueue.

As for redeploys (redeploy.redeploys): the request takes the authorization in the transaction
that writes the QUEUED operation, and enqueues the task once that committed. One request, one
approval, one operation, however many pods it names. The worker alone talks to Kubernetes
(redeploy.pod_deletion_runs).
"""

import logging
import uuid
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from kombu.exceptions import OperationalError

from cratos import queue
from cratos.audit.recorder import Action, Outcome, build_event, record_events
from cratos.exceptions import DomainError, ServiceUnavailable, ValidationFailed
from tickets.grant_services import Wanted, taken_grants

from .models import PodDeletion
from .pod_deletion_ends import give_up
from .providers import DELETE_POD_GRANTS
from .redeploys import PUBLISH_RETRY_POLICY, RedeployRequest, clean_request
from .rules import pod_delete_refusal
from .validators import validate_dns1123_subdomain

logger = logging.getLogger(__name__)

# The task that runs it, as redeploy.tasks registers it.
RUN_POD_DELETION = "redeploy.run_pod_deletion"
# One request deletes at most this many pods: a Deployment's pods, not a namespace's.
MAX_PODS = 50
QUEUE_DOWN = (
    "The task queue is not answering; the pods were not deleted and your authorization was "
    "put back. Try again in a moment."
)


def _cleaned(*, pod_names: Sequence[str]) -> list[str]:
    """The pod names trimmed and checked (the Deployment's names are checked as a redeploy's)."""
    names = [(name or "").strip() for name in pod_names or []]
    if not names:
        raise ValidationFailed(_("Give at least one pod."))
    if len(names) > MAX_PODS:
        raise ValidationFailed(
            format_lazy(_("At most {count} pods can be deleted at once."), count=MAX_PODS)
        )
    if len(set(names)) != len(names):
        raise ValidationFailed(_("A pod is named twice."))
    try:
        for name in names:
            validate_dns1123_subdomain(name)
    except ValidationError as error:
        raise ValidationFailed(error.messages[0]) from None
    return names


def request_pod_deletion(
    *,
    user,
    application_name: str,
    namespace: str,
    deployment_name: str,
    pod_names: Sequence[str],
    cluster_name: str = "",
    request_ip: str | None = None,
) -> PodDeletion:
    """Queue the deletion of some pods of an application's Deployment, for a user holding a
    live APPLICATION_DELETE_POD authorization for it. A refusal is audited in its own
    committed transaction and raised: call this outside any transaction (as views do).
    Raises PermissionRefused, UnauthorizedAccess, ValidationFailed, ServiceUnavailable.
    """
    cleaned = clean_request(
        RedeployRequest(
            application_name=application_name,
            namespace=namespace,
            deployment_name=deployment_name,
            cluster_name=cluster_name,
        )
    )
    pod_names = _cleaned(pod_names=pod_names)
    where = {
        "application_name": cleaned.application_name,
        "cluster_name": cleaned.cluster_name,
        "namespace": cleaned.namespace,
        "deployment_name": cleaned.deployment_name,
    }
    task_id = str(uuid.uuid4())
    try:
        refusal = pod_delete_refusal(user=user, application_names=[cleaned.application_name])
        if refusal is not None:
            raise refusal
        with transaction.atomic():
            operation = _create(
                user=user, where=where, pod_names=pod_names, task_id=task_id, request_ip=request_ip
            )
    except DomainError as refused:
        with transaction.atomic():
            record_events(
                build_event(
                    action=Action.POD_DELETION_REFUSED,
                    actor=user,
                    outcome=Outcome.FAILURE,
                    message=refused.message,
                    request_ip=request_ip,
                    **where,
                )
            )
        raise
    transaction.on_commit(lambda: _enqueue(operation=operation, task_id=task_id))
    return operation


def _create(
    *, user, where: dict, pod_names: list[str], task_id: str, request_ip: str | None
) -> PodDeletion:
    """The QUEUED operation with its audit event, its authorization taken last."""
    operation = PodDeletion.objects.create(
        requested_by=user,
        pod_names=pod_names,
        request_ip=request_ip,
        celery_task_id=task_id,
        **where,
    )
    record_events(
        build_event(
            action=Action.POD_DELETION_REQUESTED,
            actor=user,
            outcome=Outcome.INFO,
            operation_id=operation.pk,
            message=f"Delete pods: {', '.join(pod_names)}",
            request_ip=request_ip,
            celery_task_id=task_id,
            **where,
        )
    )
    with taken_grants(
        kind=DELETE_POD_GRANTS,
        user=user,
        wanted=[Wanted(operation.application_name, operation.pk)],
        request_ip=request_ip,
        celery_task_id=task_id,
    ) as (grant,):
        operation.ticket_id = grant.ticket_id
        operation.authorization_expires_at = grant.expires
        operation.save(update_fields=["ticket", "authorization_expires_at"])
    return operation


def _enqueue(*, operation: PodDeletion, task_id: str) -> None:
    try:
        queue.enqueue(
            RUN_POD_DELETION,
            kwargs={"operation_id": str(operation.pk)},
            task_id=task_id,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except OperationalError as error:
        logger.error("Cannot queue pod deletion %s: %s", operation.pk, error)
        give_up(operation_id=operation.pk, message=QUEUE_DOWN)
        raise ServiceUnavailable(QUEUE_DOWN) from error
