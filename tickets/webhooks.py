"""Delivering the generic signed webhook of a work order: one POST, signed with the work
order's secret (HMAC-SHA256 of the body), retried by its task on connection errors, timeouts,
429 and 5xx. What the body says is tickets.notifications' business. `post_json` is the one
HTTP POST of every notice that leaves by HTTP (the chat robots' too, tickets.channel_robots)."""

import hashlib
import hmac
import http.client
import json
import logging
import urllib.request
import uuid
from email.message import Message
from urllib.parse import urlsplit

from django.conf import settings

from .models import Ticket, WorkOrder
from .notice_queue import POST_WEBHOOK, enqueue

logger = logging.getLogger(__name__)

WEBHOOK_MAX_RETRIES = 3
WEBHOOK_BACKOFF_SECONDS = 10


class WebhookError(Exception):
    """The endpoint did not take a notice; `retry`: whether trying again later may help,
    `retry_after`: seconds the endpoint asked to wait (a rate limit's Retry-After)."""

    def __init__(self, message: str, *, retry: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


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


def post_json(*, url: str, body: bytes, headers: dict) -> tuple[int, Message, bytes]:
    """POST `body` as JSON; (status, headers, the first 2000 bytes of the answer). Raises
    WebhookError(retry=True) when no answer came (refused, DNS, timeout, reset)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise WebhookError(f"{urlsplit(url).netloc or url!r} is not an http(s) URL", retry=False)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "cratos-redeploy",
            **headers,
        },
    )
    try:
        with _opener().open(request, timeout=settings.NOTICE_WEBHOOK_TIMEOUT) as response:
            return response.status, response.headers, response.read(2000)
    except (OSError, http.client.HTTPException) as error:
        raise WebhookError(f"{urlsplit(url).netloc}: {error}", retry=True) from error


def transient(status: int) -> bool:
    """Statuses worth another try later: rate limited, or the server's trouble."""
    return status >= 500 or status == 429


def post_webhook(*, work_order_id: int, event: str, body: str, delivery: str) -> None:
    """POST one signed body to the work order's webhook. Raises WebhookError: retry=True for
    connection errors, timeouts, 429 and 5xx; retry=False for any other non-2xx status."""
    work_order = WorkOrder.objects.get(pk=work_order_id)
    if not work_order.has_webhook:
        logger.info("Work order %s has no webhook any more; %s dropped", work_order, event)
        return
    url = work_order.webhook_url
    raw = body.encode()
    status, _headers, answer = post_json(
        url=url,
        body=raw,
        headers={
            "X-Cratos-Event": event,
            "X-Cratos-Delivery": delivery,
            "X-Cratos-Signature": webhook_signature(secret=work_order.webhook_secret, body=raw),
        },
    )
    if 200 <= status < 300:
        return
    detail = f"{url} answered {status}: {answer[:500].decode(errors='replace')}"
    raise WebhookError(detail, retry=transient(status))


def queue_webhook(*, ticket: Ticket, event: str, context: dict, summary: str, **fields) -> None:
    """Queue the event's webhook body for the ticket's work order, if it has a webhook."""
    work_order = ticket.work_order
    if not work_order.webhook_url:
        return
    if not work_order.has_webhook:
        logger.warning("Webhook of work order %s has no secret; %s not sent", work_order, event)
        return
    body = {
        "event": event,
        "ticketNo": ticket.ticket_no,
        "workOrder": work_order.key,
        "state": ticket.state,
        "url": context["ticket_url"],
        "applicant": ticket.applicant.get_username(),
        "reason": ticket.reason,
        "applications": [entry.name for entry in ticket.entries.all()],
        "entriesMarkdown": context["entries_markdown"],
        # One plain line and the link: what a relay puts in a chat message.
        "text": f"{summary}\n{context['ticket_url']}",
        **fields,
    }
    enqueue(
        POST_WEBHOOK,
        work_order_id=work_order.pk,
        event=event,
        body=json.dumps(body, ensure_ascii=False),
        delivery=uuid.uuid4().hex,
    )
