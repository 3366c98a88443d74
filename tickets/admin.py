"""The approvers' admin: work orders, and tickets decided through the ticket services.

Tickets change only through `tickets.services`; the admin shows them read-only and its approve and
reject actions hand every ticket to the service, which alone decides who may approve
(`tickets.rules`). Each refusal is shown as an error message in the service's own words.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cratos.admin_forms import ReadOnlyAdminMixin, WriteOnlyCredentialsForm
from cratos.exceptions import DomainError
from cratos.security import client_ip

from . import selectors, services
from .models import (
    Approval,
    ApprovalNode,
    NoticeChannel,
    NoticeDelivery,
    NoticeProfile,
    Ticket,
    TicketEntry,
    TicketNodeApprover,
    TicketStateChange,
    WorkOrder,
)
from .providers import render_tags
from .rules import decision_refusal


def success_mark(success: bool | None) -> str:
    """✓ succeeded, ✗ did not, — not known yet (the stock boolean icon shows a bare "?")."""
    return {True: "✓", False: "✗"}.get(success, "—")


def state_label(state: str) -> str:
    return Ticket.State(state).label if state in Ticket.State.values else state


class ApprovalNodeInline(admin.TabularInline):
    model = ApprovalNode
    fields = ("position", "name", "name_zh_hans", "node_type", "group")
    extra = 0
    ordering = ("position",)


class WorkOrderForm(WriteOnlyCredentialsForm):
    credential_fields = ("webhook_secret",)
    # A webhook URL typed without a scheme means https.
    webhook_url = forms.URLField(
        label=_("Webhook URL"), required=False, assume_scheme="https", max_length=512
    )

    class Meta:
        model = WorkOrder
        fields = "__all__"
        widgets = {"webhook_secret": forms.PasswordInput(render_value=False)}


@admin.register(WorkOrder)
class WorkOrderAdmin(admin.ModelAdmin):
    form = WorkOrderForm
    list_display = (
        "key",
        "name",
        "name_zh_hans",
        "business_type",
        "authorization_ttl_seconds",
        "enabled",
    )
    list_filter = ("enabled", "business_type")
    search_fields = ("key", "name", "name_zh_hans")
    inlines = [ApprovalNodeInline]


class TicketPartInline(admin.TabularInline):
    """Part of a ticket, shown to whoever may view the ticket and never editable here."""

    extra = 0
    can_delete = False
    template = "admin/edit_inline/readonly_tabular.html"

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("tickets.view_ticket") or request.user.has_perm(
            "tickets.change_ticket"
        )

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TicketEntryInline(TicketPartInline):
    model = TicketEntry
    fields = readonly_fields = ("name", "tags", "entry_state", "authorization_expires_at", "result")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("ticket")

    @admin.display(description=_("Tags"))
    def tags(self, entry: TicketEntry) -> str:
        return render_tags(entry.content.get("tags", []))

    @admin.display(description=_("State"))
    def entry_state(self, entry: TicketEntry) -> str:
        # An entry stays DRAFT until approval; on a submitted ticket that reads as a draft.
        if entry.state == TicketEntry.State.DRAFT and entry.ticket.state != Ticket.State.NEW:
            return gettext("Awaiting approval")
        return entry.get_state_display()

    @admin.display(description=_("Success"))
    def result(self, entry: TicketEntry) -> str:
        return success_mark(entry.success)


class ApprovalInline(TicketPartInline):
    model = Approval
    fields = readonly_fields = ("node_name", "decision", "approver", "comment", "decided_at")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("node", "approver")

    @admin.display(description=_("Node"))
    def node_name(self, approval: Approval) -> str:
        return approval.node.display_name


class TicketStateChangeInline(TicketPartInline):
    model = TicketStateChange
    verbose_name = _("state change")
    verbose_name_plural = _("state history")
    fields = readonly_fields = ("changed_at", "from_label", "to_label", "actor", "note")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    @admin.display(description=_("From"))
    def from_label(self, change: TicketStateChange) -> str:
        return state_label(change.from_state) if change.from_state else "—"

    @admin.display(description=_("To"))
    def to_label(self, change: TicketStateChange) -> str:
        return state_label(change.to_state)


class ChosenApproverInline(TicketPartInline):
    model = TicketNodeApprover
    verbose_name = _("chosen approver")
    verbose_name_plural = _("chosen approvers")
    fields = readonly_fields = ("node_name", "user")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("node", "user")

    @admin.display(description=_("Node"))
    def node_name(self, chosen: TicketNodeApprover) -> str:
        return chosen.node.display_name


class ApproveForm(forms.Form):
    verb = "Approve"
    verb_label = _("Approve")
    title_one = _("Approve ticket")
    title_many = _("Approve selected tickets")
    comment = forms.CharField(
        label=_("Comment"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )

    def decide(self, *, ticket: Ticket, approver, request_ip: str) -> str:
        ticket = services.approve_ticket(
            ticket=ticket,
            approver=approver,
            comment=self.cleaned_data["comment"],
            request_ip=request_ip,
        )
        if ticket.state == Ticket.State.APPROVED:
            return gettext("Ticket %(no)s approved.") % {"no": ticket.ticket_no}
        return gettext(
            "Ticket %(no)s: your approval is recorded; it now waits for node %(node)s."
        ) % {"no": ticket.ticket_no, "node": ticket.current_node.display_name}


class RejectForm(forms.Form):
    verb = "Reject"
    verb_label = _("Reject")
    title_one = _("Reject ticket")
    title_many = _("Reject selected tickets")
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Required; the applicant sees it."),
    )

    def decide(self, *, ticket: Ticket, approver, request_ip: str) -> str:
        ticket = services.reject_ticket(
            ticket=ticket,
            approver=approver,
            reason=self.cleaned_data["reason"],
            request_ip=request_ip,
        )
        return gettext("Ticket %(no)s rejected.") % {"no": ticket.ticket_no}


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = (
        "ticket_no",
        "applicant",
        "applications",
        "state",
        "current_node_name",
        "submitted_at",
    )
    list_filter = ("state", "work_order", ("applicant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("ticket_no", "applicant__username", "entries__name")
    fields = readonly_fields = (
        "ticket_no",
        "work_order",
        "applicant",
        "reason",
        "state",
        "current_node_name",
        "result",
        "created_at",
        "submitted_at",
        "decided_at",
        "completed_at",
    )
    inlines = [TicketEntryInline, ApprovalInline, ChosenApproverInline, TicketStateChangeInline]
    actions = ["approve_selected", "reject_selected"]
    change_form_template = "admin/tickets/ticket/change_form.html"
    decision_template = "admin/tickets/ticket/decision_confirmation.html"

    def get_queryset(self, request):
        # The list shows each approver the tickets they can decide (and decided); reviewers see
        # all. A ticket's page or an action posted for it answers with the rule's own words.
        queryset = selectors.ticket_queryset()
        match = getattr(request, "resolver_match", None)
        if request.method == "GET" and match and match.url_name == "tickets_ticket_changelist":
            queryset = selectors.tickets_in_admin(user=request.user)
        queryset = queryset.prefetch_related("entries")
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    # Tickets are created by their applicants and change only through the ticket services.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Approve and Reject are offered only to who may decide now (never on one's own ticket).
        ticket = self.get_object(request, unquote(object_id))
        if ticket is not None:
            extra_context = {
                **(extra_context or {}),
                "may_approve": decision_refusal(ticket=ticket, user=request.user) is None,
                "may_reject": decision_refusal(ticket=ticket, user=request.user, reject=True)
                is None,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("Success"))
    def result(self, ticket: Ticket) -> str:
        return success_mark(ticket.success)

    @admin.display(description=_("Applications"))
    def applications(self, ticket: Ticket) -> str:
        return ", ".join(entry.name for entry in ticket.entries.all())

    @admin.display(description=_("Current node"), ordering="current_node__name")
    def current_node_name(self, ticket: Ticket) -> str:
        return ticket.current_node.display_name if ticket.current_node else "-"

    @admin.action(description=ApproveForm.title_many)
    def approve_selected(self, request, queryset):
        return self.decide(request, tickets=queryset.order_by("pk"), form_class=ApproveForm)

    @admin.action(description=RejectForm.title_many)
    def reject_selected(self, request, queryset):
        return self.decide(request, tickets=queryset.order_by("pk"), form_class=RejectForm)

    def decide(self, request, *, tickets, form_class, single: bool = False):
        """Ask for the comment or reason; once confirmed, hand each ticket to the service.

        Returns None when the decisions were taken, else the confirmation page.
        """
        confirmed = request.method == "POST" and request.POST.get("post") == "yes"
        form = form_class(request.POST if confirmed else None)
        if form.is_valid():
            for ticket in tickets:
                try:
                    success = form.decide(
                        ticket=ticket, approver=request.user, request_ip=client_ip(request)
                    )
                except DomainError as refusal:
                    messages.error(request, f"{ticket.ticket_no}: {refusal.message}")
                else:
                    messages.success(request, success)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": form_class.title_one if single else form_class.title_many,
            "opts": self.opts,
            "form": form,
            "verb": form_class.verb_label,
            "single": single,
            "tickets": [(ticket, *selectors.entries_table(ticket=ticket)) for ticket in tickets],
            "action_name": f"{form_class.verb.lower()}_selected",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, self.decision_template, context)

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        # Ahead of the default URLs, whose `<path:object_id>/` would swallow these.
        return [
            path(
                "<path:object_id>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name=f"{prefix}_approve",
            ),
            path(
                "<path:object_id>/reject/",
                self.admin_site.admin_view(self.reject_view),
                name=f"{prefix}_reject",
            ),
            *super().get_urls(),
        ]

    def approve_view(self, request, object_id):
        return self._decide_one(request, object_id, form_class=ApproveForm)

    def reject_view(self, request, object_id):
        return self._decide_one(request, object_id, form_class=RejectForm)

    def _decide_one(self, request, object_id, *, form_class):
        """The change page's buttons: the bulk actions' code path, for one ticket."""
        ticket = self.get_object(request, unquote(object_id))
        if ticket is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, ticket):
            raise PermissionDenied
        response = self.decide(request, tickets=[ticket], form_class=form_class, single=True)
        return response or redirect("admin:tickets_ticket_change", ticket.pk)


class NoticeChannelForm(WriteOnlyCredentialsForm):
    credential_fields = ("webhook_url", "secret")

    class Meta:
        model = NoticeChannel
        fields = ("name", "medium", "work_order", "enabled", "webhook_url", "secret", "language")
        widgets = {
            "webhook_url": forms.PasswordInput(render_value=False),
            "secret": forms.PasswordInput(render_value=False),
        }


@admin.register(NoticeChannel)
class NoticeChannelAdmin(admin.ModelAdmin):
    """Chat robots (and email) per work order, or by default; with each channel's health."""

    form = NoticeChannelForm
    list_display = (
        "name",
        "medium",
        "work_order",
        "enabled",
        "language",
        "consecutive_failures",
        "last_error_short",
        "last_failed_at",
        "last_delivered_at",
    )
    list_filter = ("medium", "enabled", "work_order")
    search_fields = ("name",)
    readonly_fields = ("consecutive_failures", "last_error", "last_failed_at", "last_delivered_at")

    @admin.display(description=_("Last error"))
    def last_error_short(self, channel: NoticeChannel) -> str:
        return Truncator(channel.last_error).chars(80)


@admin.register(NoticeProfile)
class NoticeProfileAdmin(admin.ModelAdmin):
    """Each user's notice language and chat ids (for @-mentions)."""

    list_display = (
        "user",
        "language",
        "dingtalk_user_id",
        "feishu_open_id",
        "wecom_user_id",
        "slack_member_id",
    )
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)


@admin.register(NoticeDelivery)
class NoticeDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What each chat channel was sent, or failed to take: a record, never edited."""

    list_display = ("created_at", "channel", "event", "ticket", "state", "attempts", "last_error")
    list_filter = ("state", "channel", "event")
    search_fields = ("key", "ticket__ticket_no")
