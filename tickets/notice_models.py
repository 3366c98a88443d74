"""Notices' records: where they go (channels), how each person wants them (profiles), each
robot post (deliveries) and the one "expiring soon" warning per authorization. Kept apart from
models.py so neither grows past a readable size; models.py imports them, so Django finds them
there."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cratos.fields import EncryptedTextField


class NoticeChannel(models.Model):
    """Where a work order's notices go besides its webhook: a chat robot, or email.

    A work order with enabled channels of its own uses those; any other uses the default
    channels (no work order). With no channel at all, every notice goes by email, as it
    always did."""

    class Medium(models.TextChoices):
        EMAIL = "EMAIL", _("Email")
        DINGTALK = "DINGTALK", _("DingTalk robot")
        FEISHU = "FEISHU", _("Feishu / Lark bot")
        WECOM = "WECOM", _("WeCom group robot")
        SLACK = "SLACK", _("Slack incoming webhook")

    # Robots that sign each message with a secret of their own (timestamp + HMAC-SHA256).
    SIGNED_MEDIA = (Medium.DINGTALK, Medium.FEISHU)

    name = models.CharField(_("Name"), max_length=64, unique=True)
    medium = models.CharField(_("Medium"), max_length=16, choices=Medium.choices)
    work_order = models.ForeignKey(
        "tickets.WorkOrder",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notice_channels",
        help_text=_("Empty: a default channel, for every work order without channels of its own."),
        verbose_name=_("Work order"),
    )
    enabled = models.BooleanField(_("Enabled"), default=True)
    # The robot's webhook URL carries its access token: encrypted like cluster credentials.
    webhook_url = EncryptedTextField(
        _("Webhook URL"),
        blank=True,
        help_text=_("The robot's webhook address, as the chat app shows it (token included)."),
    )
    secret = EncryptedTextField(
        _("Signing secret"),
        blank=True,
        help_text=_("Signing secret (DingTalk: SEC…; Feishu/Lark: signature key)."),
    )
    language = models.CharField(
        _("Language"),
        max_length=8,
        choices=settings.LANGUAGES,
        default=settings.LANGUAGE_CODE,
        help_text=_("Language of the messages when their recipients chose none."),
    )
    # The channel's health, as the admin shows it.
    consecutive_failures = models.PositiveIntegerField(
        _("Consecutive failures"), default=0, editable=False
    )
    last_error = models.TextField(_("Last error"), blank=True, editable=False)
    last_failed_at = models.DateTimeField(
        _("Last failed at"), null=True, blank=True, editable=False
    )
    last_delivered_at = models.DateTimeField(
        _("Last delivered at"), null=True, blank=True, editable=False
    )

    class Meta:
        verbose_name = _("notice channel")
        verbose_name_plural = _("notice channels")
        ordering = ["work_order__key", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.medium == self.Medium.EMAIL:
            return
        if urlsplit(self.webhook_url or "").scheme not in ("http", "https"):
            raise ValidationError({"webhook_url": gettext("A robot needs its http(s) address.")})
        if self.medium in self.SIGNED_MEDIA and not self.secret:
            raise ValidationError({"secret": gettext("This robot signs with a secret.")})


class NoticeProfile(models.Model):
    """How a user wants notices: in which language, and who they are in each chat app (so a
    robot can @-mention them)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notice_profile",
        verbose_name=_("User"),
    )
    language = models.CharField(_("Language"), max_length=8, choices=settings.LANGUAGES, blank=True)
    dingtalk_user_id = models.CharField(_("DingTalk userId"), max_length=64, blank=True)
    feishu_open_id = models.CharField(_("Feishu/Lark open_id"), max_length=64, blank=True)
    wecom_user_id = models.CharField(_("WeCom userid"), max_length=64, blank=True)
    slack_member_id = models.CharField(_("Slack member ID"), max_length=32, blank=True)

    class Meta:
        verbose_name = _("notice profile")
        verbose_name_plural = _("notice profiles")

    def __str__(self) -> str:
        return str(self.user)

    def chat_id(self, medium: str) -> str:
        return {
            NoticeChannel.Medium.DINGTALK: self.dingtalk_user_id,
            NoticeChannel.Medium.FEISHU: self.feishu_open_id,
            NoticeChannel.Medium.WECOM: self.wecom_user_id,
            NoticeChannel.Medium.SLACK: self.slack_member_id,
        }.get(medium, "")


class NoticeDelivery(models.Model):
    """One notice for one robot channel: written once per event and channel (the idempotency
    key), so a task run twice never posts twice."""

    class State(models.TextChoices):
        PENDING = "PENDING", _("Pending")
        SENDING = "SENDING", _("Sending")
        SENT = "SENT", _("Sent")
        FAILED = "FAILED", _("Failed")

    channel = models.ForeignKey(
        NoticeChannel,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("Channel"),
    )
    key = models.CharField(max_length=128)
    event = models.CharField(_("Event"), max_length=32)
    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("Ticket"),
    )
    language = models.CharField(_("Language"), max_length=8)
    title = models.CharField(_("Title"), max_length=255)
    text = models.TextField(
        _("Text"),
    )
    mentions = models.JSONField(_("Mentions"), default=list)
    state = models.CharField(_("State"), max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(_("Attempts"), default=0)
    last_error = models.TextField(_("Last error"), blank=True)
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("Sent at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("notice delivery")
        verbose_name_plural = _("notice deliveries")
        constraints = [
            models.UniqueConstraint(fields=["channel", "key"], name="one_delivery_per_event")
        ]

    def __str__(self) -> str:
        return f"{self.channel}: {self.key}"


class ExpiryWarning(models.Model):
    """The "expiring soon" notice of one authorization was sent: it goes out once."""

    entry = models.ForeignKey("tickets.TicketEntry", on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()
    warned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entry", "expires_at"], name="one_warning_per_expiry")
        ]

    def __str__(self) -> str:
        return f"{self.entry} expires {self.expires_at.isoformat()}"
