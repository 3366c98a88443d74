"""Asking for redeploys (the web process): validate, take the grants, record, enqueue.

The request is the one starter of an operation: it takes each authorization (held under the
operation until the operation ends), commits the QUEUED operation with its audit events, and
enqueues the task once that committed. The worker alone reads clusters and talks to
Kubernetes (redeploy.restarts).
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import format_lazy
from kombu.exceptions import OperationalError

from cratos import queue
from cratos.audit.recorder import Action, Outcome, build_event, record_events
from cratos.exceptions import DomainError, ServiceUnavailable, ValidationFailed
from tickets.grant_services import Wanted, taken_grants
from tickets.grants import UnauthorizedAccess

from .models import RedeployOperation
from .operations import give_up
from .providers import REDEPLOY_GRANTS
from .rules import redeploy_refusal
from .validators import validate_dns1123_label, validate_dns1123_subdomain

logger = logging.getLogger(__name__)

# The task that runs them, as redeploy.tasks registers it.
RUN_REDEPLOYS = "redeploy.run_redeploys"
# Publishing the task: a short, bounded retry, so a broker outage answers the user at once.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
QUEUE_DOWN = (
    "The task queue is not answering; the redeploy was not started and your authorization was "
    "put back. Try again in a moment."
)


@dataclass(frozen=True)
class RedeployRequest:
    """What to restart: the Deployment of an application, in one cluster or in all of them."""

    application_name: str
    namespace: str
    deployment_name: str
    cluster_name: str | None = None


def clean_request(item: RedeployRequest) -> RedeployRequest:
    """The names trimmed and checked (DNS-1123), as any action on an application's Deployment
    takes them; ValidationFailed in the user's words."""
    application_name = (item.application_name or "").strip()
    namespace = (item.namespace or "").strip()
    deployment_name = (item.deployment_name or "").strip()
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
    return RedeployRequest(
        application_name=application_name,
        namespace=namespace,
        deployment_name=deployment_name,
        cluster_name=(item.cluster_name or "").strip(),
    )


def _clean_batch(items: Sequence[RedeployRequest]) -> list[RedeployRequest]:
    """The requests cleaned; in a batch each message names the request it is about."""
    if not items:
        raise ValidationFailed("Give at least one redeploy.")
    most = settings.REDEPLOY_MAX_BATCH
    if len(items) > most:
        raise ValidationFailed(f"At most {most} redeploys can be requested at once.")
    if len(items) == 1:
        return [clean_request(items[0])]
    cleaned = []
    for number, item in enumerate(items, start=1):
        try:
            cleaned.append(clean_request(item))
        except ValidationFailed as error:
            raise ValidationFailed(f"Redeploy {number}: {error.message}") from None
    seen = set()
    for item in cleaned:
        if item.application_name in seen:
            # The second would find the authorization used by the first.
            raise ValidationFailed(
                f"Application {item.application_name} is named twice; one approval allows "
                "one redeploy."
            )
        seen.add(item.application_name)
    return cleaned


def _where(item: RedeployRequest) -> dict:
    return {
        "application_name": item.application_name,
        "cluster_name": item.cluster_name,
        "namespace": item.namespace,
        "deployment_name": item.deployment_name,
    }


def _audit_refusal(
    *, user, items: list[RedeployRequest], refusal: DomainError, request_ip: str | None
) -> None:
    """The refusal audited, committed on its own (the operations were not): in a batch refused
    for want of some authorizations, one event per request (those without one "Unauthorized
    access", the others not queued); a whole request refused for one reason (no permission,
    Redis away), one event however long the batch."""
    missing = getattr(refusal, "missing", ())
    if len(items) == 1:
        audited = [(items[0], refusal.message)]
    elif missing:
        audited = [
            (
                item,
                UnauthorizedAccess.default_message
                if item.application_name in missing
                else f"Not queued: {UnauthorizedAccess.default_message}",
            )
            for item in items
        ]
    else:
        # Lazily joined: the recorder words the refusal in English, whatever the actor reads.
        audited = [
            (items[0], format_lazy("{} ({} redeploys requested)", refusal.message, len(items)))
        ]
    with transaction.atomic():
        record_events(
            *[
                build_event(
                    action=Action.REDEPLOY_REFUSED,
                    actor=user,
                    outcome=Outcome.FAILURE,
                    message=message,
                    request_ip=request_ip,
                    **_where(item),
                )
                for item, message in audited
            ]
        )


def request_redeploys(
    *, user, items: Sequence[RedeployRequest], request_ip: str | None = None
) -> list[RedeployOperation]:
    """Queue redeploys for a user holding a live authorization for each application: one
    operation per request, all run by one task (a batch restarts its Deployments side by side).

    All or nothing: the authorizations are taken in the operations' transaction, so when any
    is missing none is queued, the refusal is audited in its own committed transaction and
    raised (in a batch its message names the applications): call this outside any transaction
    (as views do). Without a cluster every cluster where the binding exists is restarted.
    The task is queued once the operations are committed; a broker that does not answer fails
    them, gives the authorizations back and raises ServiceUnavailable.
    Raises PermissionRefused, UnauthorizedAccess, ValidationFailed, ServiceUnavailable.
    """
    items = _clean_batch(items)
    # One task for the batch, so every operation carries its id.
    task_id = str(uuid.uuid4())
    try:
        refusal = redeploy_refusal(
            user=user, application_names=[item.application_name for item in items]
        )
        if refusal is not None:
            raise refusal
        with transaction.atomic():
            operations = _create(user=user, items=items, task_id=task_id, request_ip=request_ip)
    except DomainError as refused:
        _audit_refusal(user=user, items=items, refusal=refused, request_ip=request_ip)
        raise
    # Outside the operations' transaction: now, or when the caller's transaction commits.
    transaction.on_commit(lambda: _enqueue(operations=operations, task_id=task_id))
    return operations


def _create(
    *, user, items: list[RedeployRequest], task_id: str, request_ip: str | None
) -> list[RedeployOperation]:
    """The QUEUED operations with their audit events, their authorizations taken last."""
    operations = RedeployOperation.objects.bulk_create(
        RedeployOperation(
            requested_by=user, request_ip=request_ip, celery_task_id=task_id, **_where(item)
        )
        for item in items
    )
    record_events(
        *[
            build_event(
                action=Action.REDEPLOY_REQUESTED,
                actor=user,
                outcome=Outcome.INFO,
                operation_id=operation.pk,
                request_ip=request_ip,
                celery_task_id=task_id,
                **_where(item),
            )
            for operation, item in zip(operations, items, strict=True)
        ]
    )
    wanted = [
        Wanted(item.application_name, operation.pk)
        for item, operation in zip(items, operations, strict=True)
    ]
    with taken_grants(
        kind=REDEPLOY_GRANTS,
        user=user,
        wanted=wanted,
        request_ip=request_ip,
        celery_task_id=task_id,
    ) as grants:
        # Mostly one ticket for the batch: an UPDATE per ticket and expiry, not one per row.
        alike = defaultdict(list)
        for operation, grant in zip(operations, grants, strict=True):
            operation.ticket_id = grant.ticket_id
            operation.authorization_expires_at = grant.expires
            alike[grant.ticket_id, grant.expires].append(operation.pk)
        for (ticket_id, expires), operation_ids in alike.items():
            RedeployOperation.objects.filter(pk__in=operation_ids).update(
                ticket_id=ticket_id, authorization_expires_at=expires
            )
    return operations


def request_redeploy(
    *,
    user,
    application_name: str,
    namespace: str,
    deployment_name: str,
    cluster_name: str | None = None,
    request_ip: str | None = None,
) -> RedeployOperation:
    """Queue one redeploy (request_redeploys with one request)."""
    (operation,) = request_redeploys(
        user=user,
        items=[
            RedeployRequest(
                application_name=application_name,
                namespace=namespace,
                deployment_name=deployment_name,
                cluster_name=cluster_name,
            )
        ],
        request_ip=request_ip,
    )
    return operation


def _enqueue(*, operations: list[RedeployOperation], task_id: str) -> None:
    operation_ids = [str(operation.pk) for operation in operations]
    try:
        queue.enqueue(
            RUN_REDEPLOYS,
            kwargs={"operation_ids": operation_ids},
            task_id=task_id,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except OperationalError as error:
        logger.error("Cannot queue redeploys %s: %s", ", ".join(operation_ids), error)
        for operation_id in operation_ids:
            give_up(operation_id=operation_id, message=QUEUE_DOWN)
        raise ServiceUnavailable(QUEUE_DOWN) from error
