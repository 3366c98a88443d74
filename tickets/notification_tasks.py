"""Celery tasks that send notices: thin shells around tickets.notifications.

A notice is never worth failing for: each task logs what went wrong and ends. Only the webhook
and the chat robots' deliveries are retried (connection errors, timeouts, 429, 5xx and the
robots' rate-limit answers; with backoff when a broker is there), each in a task of its own, so
a retry never sends the emails again.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.utils import translation

from . import channels, notice_expiry, notice_queue, notifications, webhooks

logger = logging.getLogger(__name__)


def _send(send, **kwargs) -> None:
    # Notices are written in the site's language, whoever's request happened to queue them.
    try:
        with translation.override(settings.LANGUAGE_CODE):
            send(**kwargs)
    except Exception:
        logger.exception("Notice %s %s failed", send.__name__, kwargs)


@shared_task(name=notice_queue.SEND_TICKET_SUBMITTED)
def send_ticket_submitted(*, ticket_id: int, node_id: int) -> None:
    _send(notifications.send_ticket_submitted, ticket_id=ticket_id, node_id=node_id)


@shared_task(name=notice_queue.SEND_TICKET_DECIDED)
def send_ticket_decided(*, ticket_id: int, approval_id: int) -> None:
    _send(notifications.send_ticket_decided, ticket_id=ticket_id, approval_id=approval_id)


@shared_task(name=notice_queue.SEND_AUTHORIZATION_REVOKED)
def send_authorization_revoked(*, entry_id: int, actor_username: str, reason: str) -> None:
    _send(
        notifications.send_authorization_revoked,
        entry_id=entry_id,
        actor_username=actor_username,
        reason=reason,
    )


@shared_task(name=notice_queue.SEND_OPERATION_FINISHED)
def send_operation_finished(*, ticket_id: int, report: dict) -> None:
    _send(notifications.send_operation_finished, ticket_id=ticket_id, report=report)


@shared_task(name=notice_queue.SEND_AUTHORIZATION_EXPIRING)
def send_authorization_expiring(*, entry_id: int, expires_at: str) -> None:
    _send(notifications.send_authorization_expiring, entry_id=entry_id, expires_at=expires_at)


@shared_task(name=notice_queue.WARN_EXPIRING_AUTHORIZATIONS)
def warn_expiring_authorizations() -> int:
    return notice_expiry.warn_expiring_authorizations()


def _again(task, error: webhooks.WebhookError, *, countdown: float, max_retries: int) -> bool:
    """Try `task` again later if `error` may pass and retries are left; False when not."""
    if not error.retry or task.request.retries >= max_retries:
        return False
    if task.request.is_eager:
        # No broker (tests, the demo): Celery would raise Retry here, so retry inline.
        task.apply(kwargs=task.request.kwargs, retries=task.request.retries + 1)
        return True
    raise task.retry(exc=error, countdown=countdown, max_retries=max_retries) from None


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=webhooks.WEBHOOK_MAX_RETRIES,
    name=notice_queue.POST_WEBHOOK,
)
def post_webhook(self, *, work_order_id: int, event: str, body: str, delivery: str) -> None:
    try:
        webhooks.post_webhook(
            work_order_id=work_order_id, event=event, body=body, delivery=delivery
        )
    except webhooks.WebhookError as error:
        attempt = self.request.retries + 1
        logger.warning("Webhook %s %s attempt %d failed: %s", event, delivery, attempt, error)
        countdown = webhooks.webhook_backoff(self.request.retries)
        if not _again(self, error, countdown=countdown, max_retries=self.max_retries):
            logger.error("Webhook %s %s not delivered (attempt %d)", event, delivery, attempt)
    except Exception:
        logger.exception("Webhook %s %s failed", event, delivery)


@shared_task(
    bind=True,
    acks_late=True,
    name=notice_queue.DELIVER_NOTICE,
)
def deliver_notice(self, *, delivery_id: int) -> None:
    """One card to one chat robot, retried with backoff (or as long as its Retry-After asks)
    on no answer, 5xx and rate limits; the last failure is recorded on the channel."""
    try:
        channels.deliver(delivery_id=delivery_id)
    except webhooks.WebhookError as error:
        logger.warning(
            "Notice delivery %s attempt %d failed: %s", delivery_id, self.request.retries + 1, error
        )
        max_retries = settings.NOTICE_DELIVERY_MAX_RETRIES
        final = not error.retry or self.request.retries >= max_retries
        channels.delivery_failed(delivery_id=delivery_id, error=str(error), final=final)
        backoff = settings.NOTICE_DELIVERY_BACKOFF_SECONDS * 2**self.request.retries
        _again(self, error, countdown=max(backoff, error.retry_after or 0), max_retries=max_retries)
    except Exception as error:
        logger.exception("Notice delivery %s failed", delivery_id)
        channels.delivery_failed(delivery_id=delivery_id, error=repr(error), final=True)
