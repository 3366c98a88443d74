"""Forms of the requester's pages. They only shape input; the rules stay in services."""

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from cratos.exceptions import DomainError
from cratos.validation import parse_id

from . import selectors, services
from .models import ApprovalNode, Ticket, WorkOrder
from .providers import provider_for


class ApplicationChoiceField(forms.ModelMultipleChoiceField):
    """Applications picked by name (the services take names); the template shows their tags.
    What may be picked comes from the work order's provider (see `offer`)."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs):
        kwargs.setdefault("queryset", None)
        kwargs.setdefault("to_field_name", "name")
        super().__init__(**kwargs)

    def offer(self, *, work_order: WorkOrder, user, exclude_names=()) -> None:
        self.queryset = (
            provider_for(work_order).choices(user=user).exclude(name__in=list(exclude_names))
        )

    def label_from_instance(self, obj) -> str:
        return obj.name


class RequestedApplicationsMixin:
    """The applications field offers only what the applicant may request; one posted anyway
    fails as an invalid choice, and the service's refusal (audited) replaces Django's words."""

    def clean(self):
        data = super().clean()
        if self.has_error("applications", "invalid_choice"):
            try:
                services.refuse_unrequestable(
                    actor=self.applicant,
                    work_order=self.work_order,
                    application_names=self.data.getlist("applications"),
                    ticket=self.ticket,
                )
            except DomainError as refusal:
                self.errors["applications"] = self.error_class([refusal.message])
        return data


def _user_specified_nodes(work_order: WorkOrder) -> list[ApprovalNode]:
    return [
        node
        for node in work_order.nodes.all()
        if node.is_gating and node.node_type == ApprovalNode.Type.USER_SPECIFIED
    ]


class ApproverPickersMixin:
    """One approver picker per USER_SPECIFIED node: members of the node's group but the applicant.

    The pickers are optional here; submit_ticket refuses a missing or ineligible choice with
    its own message, so the rule is checked in one place.
    """

    def add_approver_pickers(self, *, work_order: WorkOrder, applicant) -> None:
        self.approver_nodes = _user_specified_nodes(work_order)
        for node in self.approver_nodes:
            self.fields[self.approver_field_name(node)] = forms.ModelChoiceField(
                label=node.display_name,
                queryset=get_user_model()
                .objects.filter(groups=node.group_id, is_active=True)
                .exclude(pk=applicant.pk)
                .order_by("username"),
                to_field_name="username",
                required=False,
                empty_label=_("Choose an approver"),
            )

    @staticmethod
    def approver_field_name(node: ApprovalNode) -> str:
        return f"approver_{node.pk}"

    def approver_fields(self):
        return [self[self.approver_field_name(node)] for node in self.approver_nodes]

    def chosen_approvers(self) -> dict[str, object]:
        """{node name: user} as submit_ticket takes it; unpicked nodes are left out."""
        chosen = {}
        for node in self.approver_nodes:
            user = self.cleaned_data.get(self.approver_field_name(node))
            if user is not None:
                chosen[node.name] = user
        return chosen


class TicketCreateForm(RequestedApplicationsMixin, ApproverPickersMixin, forms.Form):
    SAVE_DRAFT = "draft"
    SAVE_AND_SUBMIT = "submit"

    applications = ApplicationChoiceField(label=_("Applications"))
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Why the redeploy is needed; approvers read this first."),
        error_messages={"required": _("Give a reason for the redeploy.")},
    )

    def __init__(self, *args, work_order: WorkOrder, applicant, **kwargs):
        super().__init__(*args, **kwargs)
        self.work_order, self.applicant, self.ticket = work_order, applicant, None
        self.fields["applications"].offer(work_order=work_order, user=applicant)
        self.add_approver_pickers(work_order=work_order, applicant=applicant)

    def application_names(self) -> list[str]:
        return [application.name for application in self.cleaned_data["applications"]]


class SubmitForm(ApproverPickersMixin, forms.Form):
    def __init__(self, *args, work_order: WorkOrder, applicant, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_approver_pickers(work_order=work_order, applicant=applicant)


class AddEntriesForm(RequestedApplicationsMixin, forms.Form):
    applications = ApplicationChoiceField(label=_("Add applications"))

    def __init__(self, *args, ticket: Ticket, applicant, exclude_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.work_order, self.applicant, self.ticket = ticket.work_order, applicant, ticket
        self.fields["applications"].offer(
            work_order=ticket.work_order, user=applicant, exclude_names=exclude_names
        )

    def application_names(self) -> list[str]:
        return [application.name for application in self.cleaned_data["applications"]]


class CancelForm(forms.Form):
    reason = forms.CharField(label=_("Why (optional)"), required=False, max_length=1000)


TEXT_MAX_LENGTH = 2000


class VotesField(forms.Field):
    """The tickets voted on, each with the node the approver saw, posted as `ticket_no:node_id`;
    cleaned to {ticket number: node id} in the order posted."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {
        "required": _("Check at least one ticket."),
        "invalid": _("The tickets to vote on were not understood; reload the page."),
    }

    def to_python(self, value) -> dict[str, int]:
        votes = {}
        for item in value or []:
            ticket_no, _separator, node_text = str(item).partition(":")
            node_id = parse_id(node_text)
            if not ticket_no or node_id is None:
                raise ValidationError(self.error_messages["invalid"], code="invalid")
            votes[ticket_no] = node_id
        return votes


class VoteForm(forms.Form):
    APPROVE = "approve"
    REJECT = "reject"

    decision = forms.ChoiceField(choices=[(APPROVE, _("Approve")), (REJECT, _("Reject"))])
    vote = VotesField()
    comment = forms.CharField(
        label=_("Comment (optional)"),
        required=False,
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    reason = forms.CharField(
        label=_("Reason for the rejection"),
        required=False,
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Required; the applicant sees it."),
    )

    def clean(self):
        data = super().clean()
        if data.get("decision") == self.REJECT and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason for the rejection."))
        return data

    @property
    def rejecting(self) -> bool:
        return self.data.get("decision") == self.REJECT

    def decide(self, *, item: selectors.TicketForDecision, approver, request_ip: str = "") -> str:
        """Hand one vote to its service; returns what to tell the approver."""
        if self.cleaned_data["decision"] == self.REJECT:
            ticket = services.reject_ticket(
                ticket=item.ticket,
                approver=approver,
                reason=self.cleaned_data["reason"],
                node=item.node,
                request_ip=request_ip,
            )
            return _("Ticket %(no)s rejected.") % {"no": ticket.ticket_no}
        ticket = services.approve_ticket(
            ticket=item.ticket,
            approver=approver,
            comment=self.cleaned_data["comment"],
            node=item.node,
            request_ip=request_ip,
        )
        if ticket.state == Ticket.State.APPROVED:
            return _("Ticket %(no)s approved.") % {"no": ticket.ticket_no}
        return _("Ticket %(no)s: your approval is recorded; it now waits for node %(node)s.") % {
            "no": ticket.ticket_no,
            "node": ticket.current_node.display_name,
        }


class RevokeForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason for the revocation"),
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Required; the applicant sees it."),
        error_messages={"required": _("Give a reason for the revocation.")},
    )
