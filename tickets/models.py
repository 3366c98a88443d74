from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.utils import translation
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cratos.fields import EncryptedTextField


def _name_in_language(name: str, name_zh_hans: str) -> str:
    if name_zh_hans and (translation.get_language() or "").lower() == "zh-hans":
        return name_zh_hans
    return name


# Lazy, like a refusal's message: worded when rendered, so a refusal quoting a name reads in the
# reader's language while the audit recorder (which renders in English) keeps the English one.
name_in_language = lazy(_name_in_language, str)


def english_name_field(*, max_length: int) -> models.CharField:
    return models.CharField(
        _("name"),
        max_length=max_length,
        help_text=_("In English: shown in English and kept in the audit log."),
    )


def chinese_name_field(*, max_length: int) -> models.CharField:
    return models.CharField(
        _("name in Chinese"),
        max_length=max_length,
        blank=True,
        help_text=_("Shown to people reading Chinese; blank: they read the English name."),
    )


class NamedInLanguages(models.Model):
    """A name people read in their language: `name` (English, the canonical one that keys,
    logs and webhooks use) and `name_zh_hans`; pages, the admin, refusals and notices show
    `display_name`."""

    class Meta:
        abstract = True

    @property
    def display_name(self) -> str:
        return name_in_language(self.name, self.name_zh_hans)


class WorkOrder(NamedInLanguages):
    """A kind of ticket: what it is for, how long its authorization lives, who approves it."""

    key = models.CharField(_("Key"), max_length=64, unique=True)  # e.g. APPLICATION_REDEPLOY
    business_type = models.CharField(_("Business type"), max_length=32)  # e.g. APPLICATION
    name = english_name_field(max_length=128)
    name_zh_hans = chinese_name_field(max_length=128)
    description = models.TextField(_("Description"), blank=True)
    authorization_ttl_seconds = models.PositiveIntegerField(
        _("Authorization lifetime (seconds)"), default=7200
    )
    enabled = models.BooleanField(_("Enabled"), default=True)
    # Every notice of this work order's tickets is also POSTed here as signed JSON (a relay
    # turns it into a Lark/Feishu, DingTalk, WeCom or Slack message).
    webhook_url = models.URLField(
        _("Webhook URL"),
        max_length=512,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
    )
    webhook_secret = EncryptedTextField(
        _("Webhook secret"),
        blank=True,
        help_text=_("Key of the HMAC-SHA256 signature in the X-Cratos-Signature header."),
    )

    class Meta:
        verbose_name = _("work order")
        verbose_name_plural = _("work orders")
        ordering = ["key"]

    def __str__(self) -> str:
        return str(self.display_name)

    def clean(self) -> None:
        if self.webhook_url and not self.webhook_secret:
            raise ValidationError(
                {"webhook_secret": gettext("A webhook needs a secret to sign with.")}
            )

    @property
    def has_webhook(self) -> bool:
        return bool(self.webhook_url and self.webhook_secret)


class ApprovalNode(NamedInLanguages):
    """One step of a work order's approval chain, in `position` order."""

    class Type(models.TextChoices):
        OR_BATCH = "OR_BATCH", _("Any candidate approves")
        USER_SPECIFIED = "USER_SPECIFIED", _("Applicant picks the approver")
        CC_TO = "CC_TO", _("Informed only")
        # Each entry needs a decision by a member of a team that owns its target.
        APPLICATION_OWNER = "APPLICATION_OWNER", _("A member of each owner team approves")

    work_order = models.ForeignKey(WorkOrder, on_delete=models.CASCADE, related_name="nodes")
    position = models.PositiveSmallIntegerField(
        _("Position"),
    )
    name = english_name_field(max_length=64)
    name_zh_hans = chinese_name_field(max_length=64)
    node_type = models.CharField(
        _("Node type"), max_length=20, choices=Type.choices, default=Type.OR_BATCH
    )
    group = models.ForeignKey(
        Group, on_delete=models.PROTECT, related_name="approval_nodes", verbose_name=_("Group")
    )

    class Meta:
        verbose_name = _("approval node")
        verbose_name_plural = _("approval nodes")
        ordering = ["work_order", "position"]
        constraints = [
            models.UniqueConstraint(fields=["work_order", "position"], name="unique_node_position"),
            models.UniqueConstraint(fields=["work_order", "name"], name="unique_node_name"),
        ]

    def __str__(self) -> str:
        return f"{self.work_order.key} #{self.position} {self.display_name}"

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
        _("Ticket no."), max_length=32, unique=True, null=True, editable=False
    )
    work_order = models.ForeignKey(
        WorkOrder, on_delete=models.PROTECT, related_name="tickets", verbose_name=_("Work order")
    )
    applicant = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="tickets",
        verbose_name=_("Applicant"),
    )
    reason = models.TextField(_("Reason"), blank=True)
    state = models.CharField(_("State"), max_length=16, choices=State.choices, default=State.NEW)
    current_node = models.ForeignKey(
        ApprovalNode,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("Current node"),
    )
    # Set when the ticket reaches COMPLETED: did every redeploy on it succeed?
    success = models.BooleanField(_("Success"), null=True)
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)
    submitted_at = models.DateTimeField(_("Submitted"), null=True, blank=True)
    decided_at = models.DateTimeField(_("Decided"), null=True, blank=True)
    completed_at = models.DateTimeField(_("Completed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("ticket")
        verbose_name_plural = _("tickets")
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
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("Approver"),
    )

    class Meta:
        verbose_name = _("chosen approver")
        verbose_name_plural = _("chosen approvers")
        constraints = [
            models.UniqueConstraint(fields=["ticket", "node"], name="unique_chosen_approver")
        ]

    def __str__(self) -> str:
        return f"{self.ticket}: {self.node.display_name} by {self.user}"


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
    name = models.CharField(_("Application"), max_length=128)
    content = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    authorization_expires_at = models.DateTimeField(_("Expires"), null=True, blank=True)
    success = models.BooleanField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket", "id"]
        verbose_name = _("ticket entry")
        verbose_name_plural = _("ticket entries")
        constraints = [
            models.UniqueConstraint(fields=["ticket", "name"], name="unique_entry_per_ticket")
        ]
        indexes = [models.Index(fields=["state", "authorization_expires_at"])]

    def __str__(self) -> str:
        return f"{self.ticket}: {self.name}"


class Approval(models.Model):
    """The one decision taken on one node of one ticket; on an APPLICATION_OWNER node, one per
    owner team (`team`), each taken by a member of that team."""

    class Decision(models.TextChoices):
        APPROVE = "APPROVE", _("Approve")
        REJECT = "REJECT", _("Reject")

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="approvals")
    node = models.ForeignKey(ApprovalNode, on_delete=models.PROTECT, related_name="+")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="approvals",
        verbose_name=_("Approver"),
    )
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(_("Decision"), max_length=8, choices=Decision.choices)
    comment = models.TextField(_("Comment"), blank=True)
    decided_at = models.DateTimeField(_("Decided"), auto_now_add=True)

    class Meta:
        verbose_name = _("approval")
        verbose_name_plural = _("approvals")
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
        return f"{self.ticket} {self.node.display_name}: {self.decision} by {self.approver}"


class DecisionLinkUse(models.Model):
    """The use of a signed approve/reject link from an approval notice: each works only once."""

    nonce = models.CharField(max_length=64, unique=True)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="+")
    node = models.ForeignKey(ApprovalNode, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=Approval.Decision.choices)
    used_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.ticket} {self.node.display_name}: {self.decision} link of {self.user}"


class TicketStateChange(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="state_changes")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("Actor"),
    )
    note = models.TextField(_("Note"), blank=True)
    changed_at = models.DateTimeField(_("Time"), auto_now_add=True)

    class Meta:
        verbose_name = _("state change")
        verbose_name_plural = _("state history")
        ordering = ["ticket", "changed_at", "id"]

    def __str__(self) -> str:
        return f"{self.ticket}: {self.from_state or '-'} → {self.to_state}"


# Notice channels, profiles and deliveries live in their own module; imported here for Django
# to find them.
from .notice_models import (  # noqa: E402, F401
    ExpiryWarning,
    NoticeChannel,
    NoticeDelivery,
    NoticeProfile,
)
