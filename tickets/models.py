from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cratos.fields import EncryptedTextField


class WorkOrder(models.Model):
    """A kind of ticket: what it is for, how long its authorization lives, who approves it."""

    key = models.CharField(max_length=64, unique=True)  # e.g. APPLICATION_REDEPLOY
    business_type = models.CharField(max_length=32)  # e.g. APPLICATION
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    authorization_ttl_seconds = models.PositiveIntegerField(default=7200)
    enabled = models.BooleanField(default=True)
    # Every notice of this work order's tickets is also POSTed here as signed JSON (a relay
    # turns it into a Lark/Feishu, DingTalk, WeCom or Slack message).
    webhook_url = models.URLField(
        max_length=512, blank=True, validators=[URLValidator(schemes=["http", "https"])]
    )
    webhook_secret = EncryptedTextField(
        blank=True,
        help_text=_("Key of the HMAC-SHA256 signature in the X-Cratos-Signature header."),
    )

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.webhook_url and not self.webhook_secret:
            raise ValidationError(
                {"webhook_secret": gettext("A webhook needs a secret to sign with.")}
            )

    @property
    def has_webhook(self) -> bool:
        return bool(self.webhook_url and self.webhook_secret)


class ApprovalNode(models.Model):
    """One step of a work order's approval chain, in `position` order."""

    class Type(models.TextChoices):
        OR_BATCH = "OR_BATCH", _("Any candidate approves")
        USER_SPECIFIED = "USER_SPECIFIED", _("Applicant picks the approver")
        CC_TO = "CC_TO", _("Informed only")
        # Each entry needs a decision by a member of a team that owns its target.
        APPLICATION_OWNER = "APPLICATION_OWNER", _("A member of each owner team approves")

    work_order = models.ForeignKey(WorkOrder, on_delete=models.CASCADE, related_name="nodes")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=64)
    node_type = models.CharField(max_length=20, choices=Type.choices, default=Type.OR_BATCH)
    group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="approval_nodes")

    class Meta:
        ordering = ["work_order", "position"]
        constraints = [
            models.UniqueConstraint(fields=["work_order", "position"], name="unique_node_position"),
            models.UniqueConstraint(fields=["work_order", "name"], name="unique_node_name"),
        ]

    def __str__(self) -> str:
        return f"{self.work_order.key} #{self.position} {self.name}"

    @property
    def is_gating(self) -> bool:
        return self.node_type != self.Type.CC_TO


class Ticket(models.Model):
    class State(models.TextChoices):
        # Labels as Django derives them from the names (so no migration), made translatable.
        NEW = "NEW", _("New")
        IN_APPROVAL = "IN_APPROVAL", _("In Approval")
        APPROVED = "APPROVED", _("Approved")
        COMPLETED = "COMPLETED", _("Completed")
        REJECTED = "REJECTED", _("Rejected")
        CLOSED = "CLOSED", _("Closed")

    # Assigned from the primary key right after insert, so concurrent creation never collides.
    ticket_no = models.CharField(  # noqa: DJ001  (NULL until assigned; many NULLs stay unique)
        max_length=32, unique=True, null=True, editable=False
    )
    work_order = models.ForeignKey(WorkOrder, on_delete=models.PROTECT, related_name="tickets")
    applicant = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tickets"
    )
    reason = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.NEW)
    current_node = models.ForeignKey(
        ApprovalNode, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Set when the ticket reaches COMPLETED: did every redeploy on it succeed?
    success = models.BooleanField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["applicant", "state"]),
            # "My tickets", newest first, a page at a time: read from here, never sorted.
            models.Index(fields=["applicant", "-created_at", "-id"], name="ticket_mine_newest"),
            models.Index(fields=["state", "current_node"]),
            # The approvals queue, oldest submission first, a page at a time.
            models.Index(fields=["state", "submitted_at", "id"], name="ticket_queue_oldest"),
        ]

    def __str__(self) -> str:
        return self.ticket_no or f"ticket #{self.pk}"

    @property
    def is_open(self) -> bool:
        return self.state in (self.State.NEW, self.State.IN_APPROVAL, self.State.APPROVED)


class TicketNodeApprover(models.Model):
    """The approver an applicant chose for a USER_SPECIFIED node when submitting."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="chosen_approvers")
    node = models.ForeignKey(ApprovalNode, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ticket", "node"], name="unique_chosen_approver")
        ]

    def __str__(self) -> str:
        return f"{self.ticket}: {self.node.name} by {self.user}"


class TicketEntry(models.Model):
    """One application on a ticket, with a snapshot taken when it was added."""

    class State(models.TextChoices):
        DRAFT = "DRAFT", _("Draft")  # ticket not yet approved
        AUTHORIZED = "AUTHORIZED", _("Authorized")  # a live authorization was minted
        # An operation took the authorization: it settles the entry USED when it applied its
        # change, or gives the authorization back (AUTHORIZED again) when it applied none.
        IN_USE = "IN_USE", _("In use")
        USED = "USED", _("Used")
        EXPIRED = "EXPIRED", _("Expired")
        REVOKED = "REVOKED", _("Revoked")
        # The ticket was rejected, withdrawn or expired before approval.
        CANCELLED = "CANCELLED", _("Cancelled")

    SETTLED_STATES = (State.USED, State.EXPIRED, State.REVOKED)

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="entries")
    business_type = models.CharField(max_length=32)
    # The frozen snapshot: what the entry named (an application) and how it was then.
    name = models.CharField(max_length=128)
    content = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    authorization_expires_at = models.DateTimeField(null=True, blank=True)
    success = models.BooleanField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket", "id"]
        verbose_name_plural = _("ticket entries")
        constraints = [
            models.UniqueConstraint(fields=["ticket", "name"], name="unique_entry_per_ticket")
        ]
        indexes = [models.Index(fields=["state", "authorization_expires_at"])]

    def __str__(self) -> str:
        return f"{self.ticket}: {self.name}"

    @property
    def is_settled(self) -> bool:
        return self.state in self.SETTLED_STATES


class Approval(models.Model):
    """The one decision taken on one node of one ticket; on an APPLICATION_OWNER node, one per
    owner team (`team`), each taken by a member of that team."""

    class Decision(models.TextChoices):
        APPROVE = "APPROVE", _("Approve")
        REJECT = "REJECT", _("Reject")

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="approvals")
    node = models.ForeignKey(ApprovalNode, on_delete=models.PROTECT, related_name="+")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals"
    )
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket", "decided_at", "id"]
        constraints = [
            # Two approvers racing on one node (or for one owner team): the database keeps
            # exactly one decision.
            models.UniqueConstraint(
                fields=["ticket", "node"],
                condition=models.Q(team__isnull=True),
                name="one_decision_per_node",
            ),
            models.UniqueConstraint(
                fields=["ticket", "node", "team"],
                condition=models.Q(team__isnull=False),
                name="one_decision_per_owner_team",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticket} {self.node.name}: {self.decision} by {self.approver}"


class DecisionLinkUse(models.Model):
    """The use of a signed approve/reject link from an approval notice: each works only once."""

    nonce = models.CharField(max_length=64, unique=True)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="+")
    node = models.ForeignKey(ApprovalNode, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=Approval.Decision.choices)
    used_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.ticket} {self.node.name}: {self.decision} link of {self.user}"


class TicketStateChange(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="state_changes")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket", "changed_at", "id"]

    def __str__(self) -> str:
        return f"{self.ticket}: {self.from_state or '-'} → {self.to_state}"


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

    name = models.CharField(max_length=64, unique=True)
    medium = models.CharField(max_length=16, choices=Medium.choices)
    work_order = models.ForeignKey(
        WorkOrder,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notice_channels",
        help_text=_("Empty: a default channel, for every work order without channels of its own."),
    )
    enabled = models.BooleanField(default=True)
    # The robot's webhook URL carries its access token: encrypted like cluster credentials.
    webhook_url = EncryptedTextField(
        blank=True,
        help_text=_("The robot's webhook address, as the chat app shows it (token included)."),
    )
    secret = EncryptedTextField(
        blank=True, help_text=_("Signing secret (DingTalk: SEC…; Feishu/Lark: signature key).")
    )
    language = models.CharField(
        max_length=8,
        choices=settings.LANGUAGES,
        default=settings.LANGUAGE_CODE,
        help_text=_("Language of the messages when their recipients chose none."),
    )
    # The channel's health, as the admin shows it.
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_failed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_delivered_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
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
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notice_profile"
    )
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, blank=True)
    dingtalk_user_id = models.CharField(_("DingTalk userId"), max_length=64, blank=True)
    feishu_open_id = models.CharField(_("Feishu/Lark open_id"), max_length=64, blank=True)
    wecom_user_id = models.CharField(_("WeCom userid"), max_length=64, blank=True)
    slack_member_id = models.CharField(_("Slack member ID"), max_length=32, blank=True)

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

    channel = models.ForeignKey(NoticeChannel, on_delete=models.CASCADE, related_name="deliveries")
    key = models.CharField(max_length=128)
    event = models.CharField(max_length=32)
    ticket = models.ForeignKey(
        Ticket, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    language = models.CharField(max_length=8)
    title = models.CharField(max_length=255)
    text = models.TextField()
    mentions = models.JSONField(default=list)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = _("notice deliveries")
        constraints = [
            models.UniqueConstraint(fields=["channel", "key"], name="one_delivery_per_event")
        ]

    def __str__(self) -> str:
        return f"{self.channel}: {self.key}"


class ExpiryWarning(models.Model):
    """The "expiring soon" notice of one authorization was sent: it goes out once."""

    entry = models.ForeignKey(TicketEntry, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()
    warned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entry", "expires_at"], name="one_warning_per_expiry")
        ]

    def __str__(self) -> str:
        return f"{self.entry} expires {self.expires_at.isoformat()}"
