"""Delivering the generic signed webhook of a work order: one POST, signed with the work
order's secret (HMAC-SHA256 of the body), retried by its task on connection errors, timeouts,
429 and 5xx. What the body says is tickets.notifications' business."""

import hashlib
import hmac
import http.client
import logging
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings

from .models import WorkOrder

logger = logging.getLogger(__name__)

WEBHOOK_MAX_RETRIES = 3
WEBHOOK_BACKOFF_SECONDS = 10


class WebhookError(Exception):
    """The webhook did not take a notice; `retry`: whether trying again later may help."""

    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.retry = retry


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The X-Cratos-Signature header: HMAC-SHA256 of the raw body, keyed by the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_backoff(retries: int) -> int:
    """Seconds before the next attempt: 10, 20, 40."""
    return WEBHOOK_BACKOFF_SECONDS * 2**retries


def _opener() -> urllib.request.OpenerDirector:
    # Plain HTTP(S), no redirects followed, and every status handed back rather than raised.
    opener = urllib.request.OpenerDirector()
    opener.add_handler(urllib.request.HTTPHandler())
    opener.add_handler(urllib.request.HTTPSHandler())
    return opener


def post_webhook(*, work_order_id: int, event: str, body: str, delivery: str) -> None:
    """POST one signed body to the work order's webhook. Raises WebhookError: retry=True for
    connection errors, timeouts, 429 and 5xx; retry=False for any other non-2xx status."""
    work_order = WorkOrder.objects.get(pk=work_order_id)
    if not work_order.has_webhook:
        logger.info("Work order %s has no webhook any more; %s dropped", work_order, event)
        return
    url = work_order.webhook_url
    if urlsplit(url).scheme not in ("http", "https"):
        raise WebhookError(f"{url} is not an http(s) URL", retry=False)
    raw = body.encode()
    request = urllib.request.Request(
        url,
        data=raw,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "cratos-redeploy",
            "X-Cratos-Event": event,
            "X-Cratos-Delivery": delivery,
            "X-Cratos-Signature": webhook_signature(secret=work_order.webhook_secret, body=raw),
        },
    )
    timeout = settings.NOTICE_WEBHOOK_TIMEOUT
    try:
        with _opener().open(request, timeout=timeout) as response:
            status, answer = response.status, response.read(500)
    except (OSError, http.client.HTTPException) as error:  # refused, DNS, timeout, reset
        raise WebhookError(f"{url}: {error}", retry=True) from error
    if 200 <= status < 300:
        return
    detail = f"{url} answered {status}: {answer.decode(errors='replace')}"
    raise WebhookError(detail, retry=status >= 500 or status == 429)
