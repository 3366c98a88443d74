"""Notice channels: which chat robots hear of a work order's events, each event once.

tickets.notifications hands every event to `post_cards` inside its notice task. For each robot
channel of the ticket's work order (its own, else the defaults) the card is written once, in its
reader's language, and kept as a NoticeDelivery under the event's key: the same event handled
again finds it and posts nothing. Each delivery is then a task of its own (queue
`notice_channels`) that claims it, posts it and records how it went: sent; to be tried again
(the task retries with backoff); or failed for good, which lands on the channel (the admin shows
its last error) and in the audit log. Nothing here raises into the change that caused a notice.
"""

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone, translation

from cratos.audit.recorder import Action, Outcome, record_event

from . import channel_robots
from .channel_cards import CardNotice, card_language, render_card
from .models import NoticeChannel, NoticeDelivery, WorkOrder
from .notice_queue import DELIVER_NOTICE, enqueue

logger = logging.getLogger(__name__)

Medium = NoticeChannel.Medium
State = NoticeDelivery.State


def channels_of(*, work_order: WorkOrder) -> list[NoticeChannel]:
    """The work order's enabled channels; without any, the enabled default channels."""
    own = list(NoticeChannel.objects.filter(work_order=work_order, enabled=True))
    return own or list(NoticeChannel.objects.filter(work_order=None, enabled=True))


def sends_email(*, work_order: WorkOrder) -> bool:
    """Email goes when an email channel is configured, or when no channel is (as it always
    did before there were channels)."""
    configured = channels_of(work_order=work_order)
    return not configured or any(channel.medium == Medium.EMAIL for channel in configured)


def email_language(*, work_order: WorkOrder) -> str:
    """The language of mails to users who chose none: the email channel's, else the site's."""
    for channel in channels_of(work_order=work_order):
        if channel.medium == Medium.EMAIL:
            return channel.language
    return settings.LANGUAGE_CODE


def post_cards(*, notice: CardNotice) -> None:
    """Write and queue the notice's card for each robot channel that has not had it yet."""
    for channel in channels_of(work_order=notice.ticket.work_order):
        if channel.medium == Medium.EMAIL:
            continue
        try:
            delivery = _write_delivery(channel=channel, notice=notice)
        except Exception:
            logger.exception("Cannot write notice %s for channel %s", notice.key, channel)
            continue
        if delivery is not None:
            enqueue(DELIVER_NOTICE, delivery_id=delivery.pk)


def _write_delivery(*, channel: NoticeChannel, notice: CardNotice) -> NoticeDelivery | None:
    """The new delivery, or None when this channel already has the event."""
    if NoticeDelivery.objects.filter(channel=channel, key=notice.key).exists():
        return None
    readers = [*notice.recipients, *(decision.user for decision in notice.decisions)]
    language = card_language(users=readers, fallback=channel.language)
    with translation.override(language):
        message = render_card(medium=channel.medium, notice=notice)
    try:
        with transaction.atomic():
            return NoticeDelivery.objects.create(
                channel=channel,
                key=notice.key,
                event=notice.event,
                ticket=notice.ticket,
                language=language,
                title=message.title[:255],
                text=message.text,
                mentions=message.mentions,
            )
    except IntegrityError:
        return None  # a concurrent run of the same event wrote it first


def deliver(*, delivery_id: int) -> None:
    """Post one delivery, once: it is claimed (PENDING → SENDING) first, so a duplicate task
    finds nothing to do. Raises WebhookError when the robot did not take it."""
    claimed = NoticeDelivery.objects.filter(pk=delivery_id, state=State.PENDING).update(
        state=State.SENDING, attempts=F("attempts") + 1
    )
    if not claimed:
        logger.info("Notice delivery %s is not pending; nothing to send", delivery_id)
        return
    delivery = NoticeDelivery.objects.select_related("channel").get(pk=delivery_id)
    channel = delivery.channel
    if not channel.enabled:
        # Switched off after the card was written: whoever did so wants silence.
        NoticeDelivery.objects.filter(pk=delivery_id).update(
            state=State.FAILED, last_error="The channel was disabled before delivery."
        )
        return
    channel_robots.send(
        medium=channel.medium,
        url=channel.webhook_url,
        secret=channel.secret,
        message=channel_robots.RobotMessage(
            title=delivery.title, text=delivery.text, mentions=delivery.mentions
        ),
    )
    now = timezone.now()
    with transaction.atomic():
        NoticeDelivery.objects.filter(pk=delivery_id).update(
            state=State.SENT, sent_at=now, last_error=""
        )
        NoticeChannel.objects.filter(pk=channel.pk).update(
            consecutive_failures=0, last_delivered_at=now
        )


def delivery_failed(*, delivery_id: int, error: str, final: bool) -> None:
    """Record a failed attempt: PENDING again for the next one, or, when `final`, FAILED, on
    the channel's record and in the audit log."""
    with transaction.atomic():
        delivery = (
            NoticeDelivery.objects.select_for_update(of=("self",))
            .select_related("channel", "ticket")
            .get(pk=delivery_id)
        )
        delivery.state = State.FAILED if final else State.PENDING
        delivery.last_error = error
        delivery.save(update_fields=["state", "last_error"])
        if not final:
            return
        channel = delivery.channel
        NoticeChannel.objects.filter(pk=channel.pk).update(
            consecutive_failures=F("consecutive_failures") + 1,
            last_error=error,
            last_failed_at=timezone.now(),
        )
        record_event(
            action=Action.NOTICE_CHANNEL_FAILED,
            outcome=Outcome.FAILURE,
            ticket=delivery.ticket,
            message=f"Channel {channel.name} ({channel.medium}) did not take notice "
            f"{delivery.key} after {delivery.attempts} attempt(s): {error}",
        )
