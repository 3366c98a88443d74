"""Ticket API shapes: input serializers parse and bound the request body, output ones render.

No rule lives here: who may do what, and which values are acceptable, is for tickets.services.
"""

from datetime import UTC

from rest_framework import serializers

from cratos.api import InputSerializer, StrictCharField

from . import selectors
from .providers import render_tags

MAX_REASON_LENGTH = 4000
MAX_APPLICATION_NAME_LENGTH = 128
MAX_APPLICATIONS_PER_TICKET = 50
MAX_KEY_LENGTH = 64
MAX_USERNAME_LENGTH = 150


def _reason_field(**kwargs) -> StrictCharField:
    return StrictCharField(max_length=MAX_REASON_LENGTH, allow_blank=True, **kwargs)


class TicketCreateInput(InputSerializer):
    workOrderKey = StrictCharField(max_length=MAX_KEY_LENGTH)
    applications = serializers.ListField(
        child=StrictCharField(max_length=MAX_APPLICATION_NAME_LENGTH),
        max_length=MAX_APPLICATIONS_PER_TICKET,
    )
    reason = _reason_field(required=False, default="")


class TicketSubmitInput(InputSerializer):
    reason = _reason_field(required=False)
    # {"node name": "username"} for the chain's USER_SPECIFIED nodes.
    approvers = serializers.DictField(
        child=StrictCharField(max_length=MAX_USERNAME_LENGTH), required=False, default=dict
    )

    def validate_approvers(self, value: dict) -> dict:
        too_long = [name for name in value if len(name) > MAX_KEY_LENGTH]
        if too_long:
            raise serializers.ValidationError(
                f"Node names have at most {MAX_KEY_LENGTH} characters."
            )
        if len(value) > MAX_APPLICATIONS_PER_TICKET:
            raise serializers.ValidationError("Too many approvers.")
        return value


class TicketApproveInput(InputSerializer):
    comment = _reason_field(required=False, default="")


class TicketRejectInput(InputSerializer):
    # Optional here: the service refuses a rejection without a reason, in its own words.
    reason = _reason_field(required=False, default="")


class TicketCancelInput(InputSerializer):
    reason = _reason_field(required=False, default="")


class EntryRevokeInput(InputSerializer):
    # Optional here: the service refuses a revocation without a reason, in its own words.
    reason = _reason_field(required=False, default="")


class UtcDateTimeField(serializers.DateTimeField):
    def __init__(self, **kwargs):
        super().__init__(default_timezone=UTC, **kwargs)


class TagSerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.CharField()


class EntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()  # what entries/{id}/revoke/ names
    applicationName = serializers.CharField(source="name")
    tags = serializers.SerializerMethodField()
    tagsDisplay = serializers.SerializerMethodField()
    state = serializers.CharField()
    authorizationExpiresAt = UtcDateTimeField(source="authorization_expires_at")

    def get_tags(self, entry) -> list[dict]:
        return TagSerializer(entry.content.get("tags", []), many=True).data

    def get_tagsDisplay(self, entry) -> str:
        return render_tags(entry.content.get("tags", []))


class ApprovalSerializer(serializers.Serializer):
    node = serializers.CharField(source="node.name")
    # The owner team decided for, at an APPLICATION_OWNER node.
    team = serializers.CharField(source="team.name", default=None)
    decision = serializers.CharField()
    approver = serializers.CharField(source="approver.username")
    comment = serializers.CharField()
    decidedAt = UtcDateTimeField(source="decided_at")


class StateChangeSerializer(serializers.Serializer):
    fromState = serializers.CharField(source="from_state")
    toState = serializers.CharField(source="to_state")
    actor = serializers.CharField(source="actor.username", default=None)
    note = serializers.CharField()
    changedAt = UtcDateTimeField(source="changed_at")


class NodeSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(source="node_type")


class ChosenApproverSerializer(serializers.Serializer):
    node = serializers.CharField(source="node.name")
    approver = serializers.CharField(source="user.username")


class TicketSummarySerializer(serializers.Serializer):
    """One line of a ticket list."""

    ticketNo = serializers.CharField(source="ticket_no")
    workOrderKey = serializers.CharField(source="work_order.key")
    state = serializers.CharField()
    applicant = serializers.CharField(source="applicant.username")
    reason = serializers.CharField()
    applications = serializers.SerializerMethodField()
    currentNode = NodeSerializer(source="current_node", allow_null=True)
    success = serializers.BooleanField(allow_null=True)
    createdAt = UtcDateTimeField(source="created_at")
    submittedAt = UtcDateTimeField(source="submitted_at")
    decidedAt = UtcDateTimeField(source="decided_at")
    completedAt = UtcDateTimeField(source="completed_at")

    def get_applications(self, ticket) -> list[str]:
        return [entry.name for entry in ticket.entries.all()]


class TicketSerializer(TicketSummarySerializer):
    """The whole ticket: entries with their snapshots, decisions and state history."""

    applications = None
    workOrderName = serializers.CharField(source="work_order.name")
    entries = EntrySerializer(many=True)
    entriesMarkdown = serializers.SerializerMethodField()
    approvals = ApprovalSerializer(many=True)
    chosenApprovers = ChosenApproverSerializer(source="chosen_approvers", many=True)
    stateHistory = StateChangeSerializer(source="state_changes", many=True)
    updatedAt = UtcDateTimeField(source="updated_at")

    def get_entriesMarkdown(self, ticket) -> str:
        return selectors.entries_markdown(ticket=ticket)


class AuthorizationSerializer(serializers.Serializer):
    """A live authorization as its holder may see it: never more than these fields."""

    applicationName = serializers.CharField(source="application_name")
    ticketId = serializers.IntegerField(source="ticket_id")
    ticketNo = serializers.CharField(source="ticket_no")
    expires = UtcDateTimeField()
    secondsLeft = serializers.SerializerMethodField()

    def get_secondsLeft(self, grant) -> int:
        return grant.seconds_left()
