"""Celery tasks that send notices: thin shells around tickets.notifications.

A notice is never worth failing for: each task logs what went wrong and ends. Only the webhook
is retried (connection errors, timeouts, 429 and 5xx; WEBHOOK_MAX_RETRIES times, with backoff
when a broker is there), in its own task, so a retry never sends the emails again.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.utils import translation

from . import notifications, webhooks

logger = logging.getLogger(__name__)


def _send(send, **kwargs) -> None:
    # Notices are written in the site's language, whoever's request happened to queue them.
    try:
        with translation.override(settings.LANGUAGE_CODE):
            send(**kwargs)
    except Exception:
        logger.exception("Notice %s %s failed", send.__name__, kwargs)


@shared_task(name=notifications.SEND_TICKET_SUBMITTED)
def send_ticket_submitted(*, ticket_id: int, node_id: int) -> None:
    _send(notifications.send_ticket_submitted, ticket_id=ticket_id, node_id=node_id)


@shared_task(name=notifications.SEND_TICKET_DECIDED)
def send_ticket_decided(*, ticket_id: int, approval_id: int) -> None:
    _send(notifications.send_ticket_decided, ticket_id=ticket_id, approval_id=approval_id)


@shared_task(name=notifications.SEND_AUTHORIZATION_REVOKED)
def send_authorization_revoked(*, entry_id: int, actor_username: str, reason: str) -> None:
    _send(
        notifications.send_authorization_revoked,
        entry_id=entry_id,
        actor_username=actor_username,
        reason=reason,
    )


@shared_task(name=notifications.SEND_OPERATION_FINISHED)
def send_operation_finished(*, ticket_id: int, report: dict) -> None:
    _send(notifications.send_operation_finished, ticket_id=ticket_id, report=report)


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=webhooks.WEBHOOK_MAX_RETRIES,
    name=notifications.POST_WEBHOOK,
)
def post_webhook(self, *, work_order_id: int, event: str, body: str, delivery: str) -> None:
    try:
        webhooks.post_webhook(
            work_order_id=work_order_id, event=event, body=body, delivery=delivery
        )
    except webhooks.WebhookError as error:
        attempt = self.request.retries + 1
        if error.retry and self.request.retries < self.max_retries:
            logger.warning("Webhook %s %s attempt %d failed: %s", event, delivery, attempt, error)
            if self.request.is_eager:
                # No broker (tests, the demo): Celery would raise Retry here, so retry inline.
                self.apply(kwargs=self.request.kwargs, retries=attempt)
                return
            raise self.retry(
                exc=error, countdown=webhooks.webhook_backoff(self.request.retries)
            ) from None
        logger.error(
            "Webhook %s %s not delivered (attempt %d): %s", event, delivery, attempt, error
        )
    except Exception:
        logger.exception("Webhook %s %s failed", event, delivery)
