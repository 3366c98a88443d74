"""Ticket services: every transition, every refusal, chains of each node type, the mint in the
real Redis, and two approvers deciding the same node at the same instant (real PostgreSQL)."""

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import translation

from cratos.audit.models import AuditEvent
from cratos.exceptions import (
    DomainError,
    InvalidTransition,
    PermissionRefused,
    ServiceUnavailable,
    ValidationFailed,
)
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import (
    ApplicationFactory,
    GroupFactory,
    RedeployWorkOrderFactory,
    TicketFactory,
    UserFactory,
    approval_chain,
)
from tests.support import audit_actions, redis_down
from tickets import services, settlements
from tickets.models import Approval, ApprovalNode, Ticket, TicketEntry

State = Ticket.State
Entry = TicketEntry.State
Type = ApprovalNode.Type

pytestmark = pytest.mark.django_db


@pytest.fixture
def web():
    return ApplicationFactory(
        name="web", tags=[{"key": "team", "value": "shop"}, {"key": "tier", "value": "front"}]
    )


@pytest.fixture
def draft(alice, work_order, web):
    return services.create_ticket(
        applicant=alice, work_order=work_order, application_names=["web"], reason="New config"
    )


@pytest.fixture
def submitted(draft, alice):
    return services.submit_ticket(ticket=draft, actor=alice)


@pytest.fixture
def approved(submitted, bob):
    return services.approve_ticket(ticket=submitted, approver=bob)


def history(ticket) -> list[tuple[str, str]]:
    return list(ticket.state_changes.order_by("id").values_list("from_state", "to_state"))


def chain(work_order, *nodes: tuple[str, str]) -> list[ApprovalNode]:
    """Replace the work order's approval chain with (node type, group name) nodes, in order,
    each named after its type and position ("or_batch-1")."""
    return approval_chain(
        work_order,
        *(
            (node_type, f"{node_type.lower()}-{position}", group)
            for position, (node_type, group) in enumerate(nodes, start=1)
        ),
    )


def token_value(redis_client, *, username="alice", application_name="web") -> dict | None:
    raw = redis_client.get(
        REDEPLOY_GRANTS.key(username=username, application_name=application_name)
    )
    return json.loads(raw) if raw else None


# --- create and edit -------------------------------------------------------------------------


def test_create_makes_a_new_ticket_with_snapshot_entries(draft, alice, web):
    assert draft.state == State.NEW
    assert draft.applicant == alice
    assert draft.reason == "New config"
    assert re.fullmatch(rf"\d{{8}}{draft.pk:06d}", draft.ticket_no)
    entry = draft.entries.get()
    assert (entry.name, entry.state) == ("web", Entry.DRAFT)
    assert entry.business_type == "APPLICATION"
    assert entry.content == {"name": "web", "tags": web.tags}
    assert history(draft) == [("", State.NEW)]
    assert audit_actions(ticket=draft) == ["ticket.created", "ticket.entry_added"]


def test_ticket_numbers_are_unique(alice, work_order, web):
    bob = UserFactory()
    numbers = {
        services.create_ticket(
            applicant=applicant, work_order=work_order, application_names=["web"]
        ).ticket_no
        for applicant in (alice, alice, bob)
    }
    assert len(numbers) == 3


def test_create_refuses_without_applications(alice, work_order):
    with pytest.raises(ValidationFailed, match="at least one application"):
        services.create_ticket(applicant=alice, work_order=work_order, application_names=[" "])
    assert not Ticket.objects.exists()
    assert not AuditEvent.objects.exists()


def test_create_refuses_unknown_applications_and_leaves_nothing(alice, work_order, web):
    with pytest.raises(ValidationFailed, match="Unknown application: nope"):
        services.create_ticket(
            applicant=alice, work_order=work_order, application_names=["web", "nope"]
        )
    assert not Ticket.objects.exists()
    assert not AuditEvent.objects.exists()


def test_create_refuses_a_disabled_work_order(alice, work_order, web):
    work_order.enabled = False
    work_order.save()
    with pytest.raises(ValidationFailed, match="disabled"):
        services.create_ticket(applicant=alice, work_order=work_order, application_names=["web"])


def test_draft_limit_is_three_unsubmitted_tickets_per_work_order(alice, work_order, web):
    drafts = [
        services.create_ticket(applicant=alice, work_order=work_order, application_names=["web"])
        for _ in range(3)
    ]
    with pytest.raises(ValidationFailed, match="already have 3 unsubmitted"):
        services.create_ticket(applicant=alice, work_order=work_order, application_names=["web"])
    assert Ticket.objects.filter(applicant=alice).count() == 3

    # Others are not limited by alice's drafts; submitting or cancelling one frees a slot.
    services.create_ticket(
        applicant=UserFactory(), work_order=work_order, application_names=["web"]
    )
    services.submit_ticket(ticket=drafts[0], actor=alice, reason="Go")
    services.create_ticket(applicant=alice, work_order=work_order, application_names=["web"])
    services.cancel_ticket(ticket=drafts[1], actor=alice)
    services.create_ticket(applicant=alice, work_order=work_order, application_names=["web"])
    with pytest.raises(ValidationFailed, match="unsubmitted"):
        services.create_ticket(applicant=alice, work_order=work_order, application_names=["web"])


def test_applicant_adds_and_removes_entries_while_new(draft, alice):
    ApplicationFactory(name="api", tags=[])
    services.add_entries(ticket=draft, actor=alice, application_names=["api"])
    assert list(draft.entries.values_list("name", flat=True)) == ["web", "api"]

    services.remove_entry(ticket=draft, actor=alice, entry_name="web")
    assert list(draft.entries.values_list("name", flat=True)) == ["api"]
    assert audit_actions(ticket=draft)[-2:] == ["ticket.entry_added", "ticket.entry_removed"]


def test_add_refuses_an_application_already_on_the_ticket(draft, alice):
    with pytest.raises(ValidationFailed, match="Already on the ticket: web"):
        services.add_entries(ticket=draft, actor=alice, application_names=["web"])


def test_remove_refuses_an_entry_not_on_the_ticket(draft, alice):
    with pytest.raises(ValidationFailed, match="api is not on ticket"):
        services.remove_entry(ticket=draft, actor=alice, entry_name="api")


def test_only_the_applicant_edits_entries(draft, bob):
    ApplicationFactory(name="api")
    with pytest.raises(PermissionRefused, match="Only the applicant may edit"):
        services.add_entries(ticket=draft, actor=bob, application_names=["api"])
    with pytest.raises(PermissionRefused, match="Only the applicant may edit"):
        services.remove_entry(ticket=draft, actor=bob, entry_name="web")
    assert draft.entries.count() == 1


def test_entries_are_frozen_after_submit(submitted, alice):
    ApplicationFactory(name="api")
    with pytest.raises(InvalidTransition, match="is IN_APPROVAL; its entries are frozen"):
        services.add_entries(ticket=submitted, actor=alice, application_names=["api"])
    with pytest.raises(InvalidTransition, match="entries are frozen"):
        services.remove_entry(ticket=submitted, actor=alice, entry_name="web")
    assert list(submitted.entries.values_list("name", flat=True)) == ["web"]


# --- submit ----------------------------------------------------------------------------------


def test_submit_moves_new_to_in_approval_at_the_first_node(submitted, work_order):
    assert submitted.state == State.IN_APPROVAL
    assert submitted.current_node == work_order.nodes.get()
    assert submitted.submitted_at is not None
    assert history(submitted) == [("", State.NEW), (State.NEW, State.IN_APPROVAL)]
    assert audit_actions(ticket=submitted)[-1] == "ticket.submitted"
    event = AuditEvent.objects.get(ticket_id=submitted.pk, action="ticket.submitted")
    assert event.actor_username == "alice"
    assert event.message == "New config"


def test_submit_takes_a_new_reason(draft, alice):
    ticket = services.submit_ticket(ticket=draft, actor=alice, reason="  Hotfix 42  ")
    assert ticket.reason == "Hotfix 42"


@pytest.mark.parametrize("reason", ["", "   \n"])
def test_submit_refuses_a_blank_reason(alice, work_order, web, reason):
    ticket = services.create_ticket(
        applicant=alice, work_order=work_order, application_names=["web"], reason=reason
    )
    with pytest.raises(ValidationFailed, match="Give a reason"):
        services.submit_ticket(ticket=ticket, actor=alice)
    with pytest.raises(ValidationFailed, match="Give a reason"):
        services.submit_ticket(ticket=ticket, actor=alice, reason=reason)
    ticket.refresh_from_db()
    assert ticket.state == State.NEW


def test_submit_refuses_a_ticket_without_entries(draft, alice):
    services.remove_entry(ticket=draft, actor=alice, entry_name="web")
    with pytest.raises(ValidationFailed, match="without entries cannot be submitted"):
        services.submit_ticket(ticket=draft, actor=alice)
    draft.refresh_from_db()
    assert draft.state == State.NEW


def test_only_the_applicant_submits(draft, bob):
    with pytest.raises(PermissionRefused, match="Only the applicant may submit"):
        services.submit_ticket(ticket=draft, actor=bob)


def test_submit_refuses_a_ticket_already_submitted(submitted, alice):
    with pytest.raises(InvalidTransition, match="is IN_APPROVAL; it cannot be submitted"):
        services.submit_ticket(ticket=submitted, actor=alice)
    assert history(submitted)[-1] == (State.NEW, State.IN_APPROVAL)


def test_submit_refuses_a_chain_of_cc_to_only(draft, alice, work_order):
    chain(work_order, (Type.CC_TO, "Watchers"), (Type.CC_TO, "Auditors"))
    with pytest.raises(ValidationFailed, match="no approval node that decides"):
        services.submit_ticket(ticket=draft, actor=alice)
    draft.refresh_from_db()
    assert draft.state == State.NEW


# --- approve and the authorization in Redis --------------------------------------------------


def test_approve_moves_to_approved_and_mints_the_manuals_authorization(
    approved, draft, bob, redis_client
):
    ticket = approved
    assert ticket.state == State.APPROVED
    assert ticket.current_node is None
    assert ticket.decided_at is not None
    assert history(ticket)[-1] == (State.IN_APPROVAL, State.APPROVED)
    approval = Approval.objects.get(ticket=ticket)
    assert (approval.approver, approval.decision) == (bob, Approval.Decision.APPROVE)

    key = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
    assert redis_client.keys("*") == [key.encode()]
    value = json.loads(redis_client.get(key))
    assert value == {
        "username": "alice",
        "applicationName": "web",
        "ticketId": ticket.pk,
        "ticketNo": ticket.ticket_no,
        "expires": value["expires"],
        "valid": True,
        "desc": "Temporary authorization on workOrder",
    }
    expires = datetime.fromisoformat(value["expires"])
    assert value["expires"].endswith("Z")
    assert abs(expires - datetime.now(UTC) - timedelta(seconds=7200)) < timedelta(seconds=5)
    assert 7195 <= redis_client.ttl(key) <= 7200

    entry = ticket.entries.get()
    assert entry.state == Entry.AUTHORIZED
    assert entry.authorization_expires_at == expires
    assert audit_actions(ticket=ticket)[-2:] == ["ticket.approved", "authorization.minted"]
    minted = AuditEvent.objects.get(ticket_id=ticket.pk, action="authorization.minted")
    assert (minted.actor_username, minted.application_name) == ("bob", "web")
    assert "Temporary" not in minted.message  # the value itself is never logged


def test_the_authorization_lives_as_long_as_the_work_order_says(alice, bob, redis_client):
    work_order = RedeployWorkOrderFactory()
    work_order.authorization_ttl_seconds = 600
    work_order.save()
    ticket = TicketFactory(
        applicant=alice,
        work_order=work_order,
        applications=[ApplicationFactory(name="web"), ApplicationFactory(name="api")],
        approved_by=bob,
    )
    for name in ("web", "api"):
        key = REDEPLOY_GRANTS.key(username="alice", application_name=name)
        assert 595 <= redis_client.ttl(key) <= 600
        assert token_value(redis_client, application_name=name)["ticketNo"] == ticket.ticket_no
    assert audit_actions(ticket=ticket)[-3:] == [
        "ticket.approved",
        "authorization.minted",
        "authorization.minted",
    ]


def test_approval_with_redis_down_changes_nothing(submitted, bob, redis_client):
    events_before = audit_actions(ticket=submitted)
    with redis_down(), pytest.raises(ServiceUnavailable):
        services.approve_ticket(ticket=submitted, approver=bob)
    submitted.refresh_from_db()
    assert submitted.state == State.IN_APPROVAL
    assert not Approval.objects.exists()
    assert submitted.entries.get().state == Entry.DRAFT
    assert audit_actions(ticket=submitted) == events_before
    assert redis_client.keys("*") == []
    # Redis is back: the same approval goes through.
    assert services.approve_ticket(ticket=submitted, approver=bob).state == State.APPROVED


def test_approve_keeps_the_comment(submitted, bob):
    services.approve_ticket(ticket=submitted, approver=bob, comment="  fine  ")
    assert Approval.objects.get().comment == "fine"
    assert AuditEvent.objects.get(action="ticket.approved").message == "Approval: approved — fine"


@pytest.mark.parametrize("state", [State.NEW, State.APPROVED, State.REJECTED, State.CLOSED])
def test_approve_refuses_a_ticket_not_in_approval(state, alice, bob, work_order, web):
    ticket = _ticket_in(state, alice=alice, bob=bob)
    with pytest.raises(InvalidTransition, match=f"is {state}; it cannot be approved"):
        services.approve_ticket(ticket=ticket, approver=UserFactory(groups=["Approvers"]))


@pytest.mark.parametrize("state", [State.NEW, State.APPROVED, State.REJECTED, State.CLOSED])
def test_reject_refuses_a_ticket_not_in_approval(state, alice, bob, work_order, web):
    ticket = _ticket_in(state, alice=alice, bob=bob)
    with pytest.raises(InvalidTransition, match=f"is {state}; it cannot be rejected"):
        services.reject_ticket(ticket=ticket, approver=bob, reason="No")
    ticket.refresh_from_db()
    assert ticket.state == state


def _ticket_in(state, *, alice, bob) -> Ticket:
    ticket = services.create_ticket(
        applicant=alice,
        work_order=RedeployWorkOrderFactory(),
        application_names=["web"],
        reason="Because",
    )
    if state != State.NEW:
        services.submit_ticket(ticket=ticket, actor=alice)
    if state == State.APPROVED:
        services.approve_ticket(ticket=ticket, approver=bob)
    elif state == State.REJECTED:
        services.reject_ticket(ticket=ticket, approver=bob, reason="No")
    elif state == State.CLOSED:
        services.cancel_ticket(ticket=ticket, actor=alice)
    ticket.refresh_from_db()
    assert ticket.state == state
    return ticket


def test_an_approved_ticket_never_flips_to_rejected(approved, redis_client):
    other_approver = UserFactory(groups=["Approvers"])
    with pytest.raises(InvalidTransition, match="is APPROVED; it cannot be rejected"):
        services.reject_ticket(ticket=approved, approver=other_approver, reason="Changed my mind")
    approved.refresh_from_db()
    assert approved.state == State.APPROVED
    assert approved.entries.get().state == Entry.AUTHORIZED
    assert token_value(redis_client) is not None


# --- who may decide --------------------------------------------------------------------------


def test_the_applicant_cannot_approve_their_own_ticket(alice, work_order, web):
    alice.groups.add(GroupFactory(name="Approvers"))
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    with pytest.raises(PermissionRefused, match="cannot decide on your own ticket"):
        services.approve_ticket(ticket=ticket, approver=alice)
    with pytest.raises(PermissionRefused, match="cannot decide on your own ticket"):
        services.reject_ticket(ticket=ticket, approver=alice, reason="Oops")


def test_a_superuser_in_the_group_cannot_approve_their_own_ticket(work_order, web):
    root = UserFactory(username="root", is_superuser=True, is_staff=True, groups=["Approvers"])
    ticket = TicketFactory(applicant=root, applications=[web], submitted=True)
    with pytest.raises(PermissionRefused, match="cannot decide on your own ticket"):
        services.approve_ticket(ticket=ticket, approver=root)
    ticket.refresh_from_db()
    assert ticket.state == State.IN_APPROVAL


def test_a_superuser_outside_the_group_cannot_decide(submitted):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    with pytest.raises(PermissionRefused, match="Only members of Approvers may decide"):
        services.approve_ticket(ticket=submitted, approver=root)


def test_a_stranger_cannot_decide(submitted):
    with pytest.raises(PermissionRefused, match="Only members of Approvers"):
        services.approve_ticket(ticket=submitted, approver=UserFactory())
    with pytest.raises(PermissionRefused, match="Only members of Approvers"):
        services.reject_ticket(ticket=submitted, approver=UserFactory(), reason="No")


# --- reject ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "  ", None])
def test_reject_needs_a_reason(submitted, bob, reason):
    with pytest.raises(ValidationFailed, match="Give a reason for the rejection"):
        services.reject_ticket(ticket=submitted, approver=bob, reason=reason)
    submitted.refresh_from_db()
    assert submitted.state == State.IN_APPROVAL
    assert not Approval.objects.exists()


def test_reject_moves_to_rejected_and_cancels_entries(submitted, bob, redis_client):
    ticket = services.reject_ticket(ticket=submitted, approver=bob, reason=" Not today ")
    assert ticket.state == State.REJECTED
    assert ticket.current_node is None
    assert ticket.decided_at is not None
    assert list(ticket.entries.values_list("state", flat=True)) == [Entry.CANCELLED]
    approval = Approval.objects.get()
    assert (approval.decision, approval.comment) == (Approval.Decision.REJECT, "Not today")
    change = ticket.state_changes.order_by("id").last()
    assert (change.from_state, change.to_state, change.note) == (
        State.IN_APPROVAL,
        State.REJECTED,
        "Not today",
    )
    assert change.actor == bob
    assert audit_actions(ticket=ticket)[-1] == "ticket.rejected"
    assert AuditEvent.objects.get(action="ticket.rejected").message == (
        "Approval: rejected — Not today"
    )
    assert redis_client.keys("*") == []


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_a_draft(draft, alice):
    ticket = services.cancel_ticket(ticket=draft, actor=alice, reason="Not needed")
    assert ticket.state == State.CLOSED
    assert history(ticket)[-1] == (State.NEW, State.CLOSED)
    assert ticket.state_changes.last().note == "Not needed"
    assert list(ticket.entries.values_list("state", flat=True)) == [Entry.CANCELLED]
    assert audit_actions(ticket=ticket)[-1] == "ticket.cancelled"


def test_cancel_a_ticket_in_approval(submitted, alice, bob):
    ticket = services.cancel_ticket(ticket=submitted, actor=alice)
    assert (ticket.state, ticket.current_node) == (State.CLOSED, None)
    assert history(ticket)[-1] == (State.IN_APPROVAL, State.CLOSED)
    with pytest.raises(InvalidTransition, match="is CLOSED; it cannot be approved"):
        services.approve_ticket(ticket=ticket, approver=bob)


def test_only_the_applicant_cancels(submitted, bob):
    with pytest.raises(PermissionRefused, match="Only the applicant may cancel"):
        services.cancel_ticket(ticket=submitted, actor=bob)


@pytest.mark.parametrize("state", [State.APPROVED, State.REJECTED, State.CLOSED])
def test_cancel_refuses_a_decided_or_closed_ticket(state, alice, bob, web):
    ticket = _ticket_in(state, alice=alice, bob=bob)
    with pytest.raises(InvalidTransition, match=f"is {state}; it cannot be cancelled"):
        services.cancel_ticket(ticket=ticket, actor=alice)


# --- chains of several nodes -----------------------------------------------------------------


def test_or_batch_any_member_approves_and_the_first_approval_completes_the_node(
    alice, work_order, web
):
    first, second = chain(work_order, (Type.OR_BATCH, "Leads"), (Type.OR_BATCH, "Ops"))
    lead_a, lead_b = UserFactory(groups=["Leads"]), UserFactory(groups=["Leads"])
    operator = UserFactory(groups=["Ops"])
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    assert ticket.current_node == first

    ticket = services.approve_ticket(ticket=ticket, approver=lead_b)
    assert (ticket.state, ticket.current_node) == (State.IN_APPROVAL, second)
    # A node decision is not a state change: the history shows only real transitions.
    assert history(ticket) == [("", State.NEW), (State.NEW, State.IN_APPROVAL)]
    with pytest.raises(PermissionRefused, match="Only members of Ops may decide on node"):
        services.approve_ticket(ticket=ticket, approver=lead_a)
    with pytest.raises(InvalidTransition, match=f"Node {first.name} .* was already decided"):
        services.approve_ticket(ticket=ticket, approver=lead_a, node=first)

    ticket = services.approve_ticket(ticket=ticket, approver=operator, node=second)
    assert ticket.state == State.APPROVED
    assert [(a.node, a.approver) for a in ticket.approvals.order_by("id")] == [
        (first, lead_b),
        (second, operator),
    ]
    assert audit_actions(ticket=ticket)[-3:] == [
        "ticket.approved",
        "ticket.approved",
        "authorization.minted",
    ]


def test_a_refusal_names_the_node_in_the_readers_language_and_the_audit_log_in_english(
    alice, work_order, web
):
    first, _second = chain(work_order, (Type.OR_BATCH, "Leads"), (Type.OR_BATCH, "Ops"))
    first.name_zh_hans = "组长审批"
    first.save()
    lead = UserFactory(groups=["Leads"])
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    with translation.override("zh-hans"):
        ticket = services.approve_ticket(ticket=ticket, approver=lead, comment="可以")
        with pytest.raises(InvalidTransition) as refused:
            services.approve_ticket(ticket=ticket, approver=UserFactory(), node=first)
        assert str(refused.value.message) == f"工单 {ticket.ticket_no} 的节点 组长审批 已审批过。"
    assert (
        str(refused.value.message)
        == f"Node or_batch-1 of ticket {ticket.ticket_no} was already decided."
    )
    approved = AuditEvent.objects.get(action="ticket.approved", ticket_id=ticket.pk)
    assert approved.message == "or_batch-1: approved — 可以"


def test_rejection_at_a_later_node_rejects_the_ticket(alice, work_order, web, redis_client):
    chain(work_order, (Type.OR_BATCH, "Leads"), (Type.OR_BATCH, "Ops"))
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    ticket = services.approve_ticket(ticket=ticket, approver=UserFactory(groups=["Leads"]))
    ticket = services.reject_ticket(
        ticket=ticket, approver=UserFactory(groups=["Ops"]), reason="Freeze"
    )
    assert ticket.state == State.REJECTED
    assert ticket.approvals.count() == 2
    assert redis_client.keys("*") == []


def test_one_approver_decides_one_node_per_ticket(alice, work_order, web):
    chain(work_order, (Type.OR_BATCH, "Approvers"), (Type.OR_BATCH, "Approvers"))
    both = UserFactory(groups=["Approvers"])
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    ticket = services.approve_ticket(ticket=ticket, approver=both)
    with pytest.raises(PermissionRefused, match="You already decided on ticket"):
        services.approve_ticket(ticket=ticket, approver=both)
    ticket = services.approve_ticket(ticket=ticket, approver=UserFactory(groups=["Approvers"]))
    assert ticket.state == State.APPROVED


def test_user_specified_only_the_chosen_candidate_decides(alice, work_order, web):
    (node,) = chain(work_order, (Type.USER_SPECIFIED, "Owners"))
    carol = UserFactory(username="carol", groups=["Owners"])
    dave = UserFactory(username="dave", groups=["Owners"])
    ticket = TicketFactory(applicant=alice, applications=[web])
    ticket = services.submit_ticket(ticket=ticket, actor=alice, approvers={node.name: "carol"})
    assert ticket.chosen_approvers.get().user == carol
    assert "carol" in AuditEvent.objects.get(action="ticket.submitted").message

    with pytest.raises(PermissionRefused, match="Only the approver the applicant chose"):
        services.approve_ticket(ticket=ticket, approver=dave)
    ticket = services.approve_ticket(ticket=ticket, approver=carol)
    assert ticket.state == State.APPROVED


def test_user_specified_accepts_a_user_object(alice, work_order, web):
    (node,) = chain(work_order, (Type.USER_SPECIFIED, "Owners"))
    carol = UserFactory(groups=["Owners"])
    ticket = TicketFactory(applicant=alice, applications=[web])
    ticket = services.submit_ticket(ticket=ticket, actor=alice, approvers={node.name: carol})
    ticket = services.reject_ticket(ticket=ticket, approver=carol, reason="Not now")
    assert ticket.state == State.REJECTED


@pytest.mark.parametrize(
    ("pick", "message"),
    [
        (None, "Choose the approver for node user_specified-1"),
        ("", "Choose the approver for node user_specified-1"),
        ("nobody", "nobody is not a candidate approver of node user_specified-1"),
        ("outsider", "outsider is not a candidate approver"),
        ("retired", "retired is not a candidate approver"),
        ("alice", "You cannot choose yourself as an approver"),
    ],
)
def test_user_specified_refuses_a_bad_pick(alice, work_order, web, pick, message):
    (node,) = chain(work_order, (Type.USER_SPECIFIED, "Owners"))
    alice.groups.add(node.group)
    UserFactory(username="outsider")
    UserFactory(username="retired", is_active=False, groups=["Owners"])
    ticket = TicketFactory(applicant=alice, applications=[web])
    approvers = {} if pick is None else {node.name: pick}
    with pytest.raises(ValidationFailed, match=message):
        services.submit_ticket(ticket=ticket, actor=alice, approvers=approvers)
    ticket.refresh_from_db()
    assert ticket.state == State.NEW
    assert not ticket.chosen_approvers.exists()


def test_the_approver_picked_for_a_later_node_cannot_decide_an_earlier_one(alice, work_order, web):
    _, owners = chain(work_order, (Type.OR_BATCH, "Leads"), (Type.USER_SPECIFIED, "Owners"))
    both = UserFactory(username="both", groups=["Leads", "Owners"])
    ticket = TicketFactory(applicant=alice, applications=[web])
    ticket = services.submit_ticket(ticket=ticket, actor=alice, approvers={owners.name: "both"})
    with pytest.raises(
        PermissionRefused, match=f"You are the chosen approver of node {owners.name}"
    ):
        services.approve_ticket(ticket=ticket, approver=both)
    ticket = services.approve_ticket(ticket=ticket, approver=UserFactory(groups=["Leads"]))
    assert services.approve_ticket(ticket=ticket, approver=both).state == State.APPROVED


def test_submit_refuses_the_same_pick_for_two_nodes(alice, work_order, web):
    first, second = chain(
        work_order, (Type.USER_SPECIFIED, "Owners"), (Type.USER_SPECIFIED, "Owners")
    )
    UserFactory(username="carol", groups=["Owners"])
    ticket = TicketFactory(applicant=alice, applications=[web])
    with pytest.raises(ValidationFailed, match="different approver for each node"):
        services.submit_ticket(
            ticket=ticket, actor=alice, approvers={first.name: "carol", second.name: "carol"}
        )


def test_submit_refuses_a_pick_for_a_node_that_does_not_take_one(draft, alice, bob):
    with pytest.raises(ValidationFailed, match="no node to choose an approver for: Security"):
        services.submit_ticket(ticket=draft, actor=alice, approvers={"Security": bob})


def test_cc_to_nodes_never_gate(alice, bob, work_order, web):
    _, gate, _ = chain(
        work_order,
        (Type.CC_TO, "Watchers"),
        (Type.OR_BATCH, "Approvers"),
        (Type.CC_TO, "Auditors"),
    )
    watcher = UserFactory(groups=["Watchers"])
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    assert ticket.current_node == gate
    with pytest.raises(PermissionRefused):
        services.approve_ticket(ticket=ticket, approver=watcher)
    ticket = services.approve_ticket(ticket=ticket, approver=bob)
    assert ticket.state == State.APPROVED
    assert {a.node for a in ticket.approvals.all()} == {gate}


def test_a_three_node_chain_of_each_gating_type(alice, work_order, web):
    _, picked, _ = chain(
        work_order,
        (Type.OR_BATCH, "Leads"),
        (Type.USER_SPECIFIED, "Owners"),
        (Type.CC_TO, "Watchers"),
    )
    lead = UserFactory(groups=["Leads"])
    owner = UserFactory(username="owner", groups=["Owners"])
    ticket = TicketFactory(applicant=alice, applications=[web])
    ticket = services.submit_ticket(ticket=ticket, actor=alice, approvers={picked.name: "owner"})
    ticket = services.approve_ticket(ticket=ticket, approver=lead)
    assert ticket.current_node == picked
    ticket = services.approve_ticket(ticket=ticket, approver=owner)
    assert ticket.state == State.APPROVED


# --- settle entries and complete -------------------------------------------------------------


def _entry(ticket, name) -> TicketEntry:
    return ticket.entries.get(name=name)


def _in_use(ticket, name) -> TicketEntry:
    """The entry as an operation that took its grant leaves it (tickets.grant_services)."""
    ticket.entries.filter(name=name).update(state=Entry.IN_USE)
    return _entry(ticket, name)


def test_every_entry_used_with_success_completes_with_success(approved_two, alice):
    settlements.settle_entry(entry=_in_use(approved_two, "web"), state=Entry.USED, success=True)
    approved_two.refresh_from_db()
    assert approved_two.state == State.APPROVED  # one entry still authorized

    settlements.settle_entry(
        entry=_in_use(approved_two, "api"), state=Entry.USED, success=True, actor=alice
    )
    approved_two.refresh_from_db()
    assert (approved_two.state, approved_two.success) == (State.COMPLETED, True)
    assert approved_two.completed_at is not None
    assert history(approved_two)[-1] == (State.APPROVED, State.COMPLETED)
    event = AuditEvent.objects.get(action="ticket.completed")
    assert (event.outcome, event.message) == (
        "SUCCESS",
        "Every authorized action ran and succeeded.",
    )


@pytest.mark.parametrize(
    ("state", "success"),
    [(Entry.USED, False), (Entry.EXPIRED, None), (Entry.REVOKED, None)],
)
def test_completion_fails_unless_every_entry_was_used_with_success(approved_two, state, success):
    settlements.settle_entry(entry=_in_use(approved_two, "web"), state=Entry.USED, success=True)
    api = _in_use(approved_two, "api") if state == Entry.USED else _entry(approved_two, "api")
    settlements.settle_entry(entry=api, state=state, success=success)
    approved_two.refresh_from_db()
    assert (approved_two.state, approved_two.success) == (State.COMPLETED, False)
    assert _entry(approved_two, "api").state == state
    event = AuditEvent.objects.get(action="ticket.completed")
    assert event.outcome == "FAILURE"


def test_expired_and_revoked_entries_record_no_success(approved_two):
    settlements.settle_entry(entry=_entry(approved_two, "web"), state=Entry.EXPIRED, success=True)
    assert _entry(approved_two, "web").success is None


def test_an_entry_settles_once(approved_two):
    settlements.settle_entry(entry=_in_use(approved_two, "web"), state=Entry.USED, success=True)
    with pytest.raises(
        InvalidTransition, match=r"web on ticket \d+ is USED; only an entry authorized"
    ):
        settlements.settle_entry(entry=_entry(approved_two, "web"), state=Entry.REVOKED)


def test_an_entry_not_yet_authorized_cannot_settle(submitted):
    with pytest.raises(InvalidTransition, match="is DRAFT; only an entry in use"):
        settlements.settle_entry(entry=submitted.entries.get(), state=Entry.USED, success=True)


@pytest.mark.parametrize("state", [Entry.DRAFT, Entry.AUTHORIZED, Entry.CANCELLED, "DONE"])
def test_settle_refuses_a_state_that_does_not_settle(approved_two, state):
    with pytest.raises(ValidationFailed, match=f"not as {state}"):
        settlements.settle_entry(entry=_entry(approved_two, "web"), state=state)


def test_a_completed_ticket_cannot_move_again(approved, alice, bob):
    settlements.settle_entry(entry=_in_use(approved, "web"), state=Entry.USED, success=True)
    approved.refresh_from_db()
    assert approved.state == State.COMPLETED
    with pytest.raises(InvalidTransition, match="is COMPLETED; it cannot be cancelled"):
        services.cancel_ticket(ticket=approved, actor=alice)
    with pytest.raises(InvalidTransition, match="is COMPLETED; it cannot be rejected"):
        services.reject_ticket(ticket=approved, approver=bob, reason="Late")


# --- the whole life, audited ----------------------------------------------------------------


def test_full_life_history_and_audit_trail(alice, bob, work_order, web):
    ticket = services.create_ticket(
        applicant=alice, work_order=work_order, application_names=["web"]
    )
    ticket = services.submit_ticket(ticket=ticket, actor=alice, reason="Config")
    ticket = services.approve_ticket(ticket=ticket, approver=bob)
    settlements.settle_entry(entry=_in_use(ticket, "web"), state=Entry.USED, success=True)
    assert history(ticket) == [
        ("", State.NEW),
        (State.NEW, State.IN_APPROVAL),
        (State.IN_APPROVAL, State.APPROVED),
        (State.APPROVED, State.COMPLETED),
    ]
    assert [c.actor for c in ticket.state_changes.order_by("id")] == [alice, alice, bob, None]
    assert audit_actions(ticket=ticket) == [
        "ticket.created",
        "ticket.entry_added",
        "ticket.submitted",
        "ticket.approved",
        "authorization.minted",
        "ticket.completed",
    ]


def test_audit_events_are_written_in_the_transaction_of_the_change(submitted, bob):
    """A change rolled back takes its audit event and state history with it."""
    with pytest.raises(RuntimeError), transaction.atomic():
        services.reject_ticket(ticket=submitted, approver=bob, reason="No")
        assert audit_actions(ticket=submitted)[-1] == "ticket.rejected"
        raise RuntimeError("the surrounding request failed")
    submitted.refresh_from_db()
    assert submitted.state == State.IN_APPROVAL
    assert "ticket.rejected" not in audit_actions(ticket=submitted)
    assert history(submitted)[-1] == (State.NEW, State.IN_APPROVAL)
    assert not Approval.objects.exists()


# --- two approvers at the same instant (real threads, real PostgreSQL) -----------------------


def _race(calls) -> list:
    """Run each call in its own thread (own DB connection), released together."""
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=5)
            outcomes[index] = call()
        except DomainError as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


@pytest.fixture
def racing_ticket():
    """Alice's submitted ticket, committed (transactional test), and two approvers."""
    RedeployWorkOrderFactory()
    bob = UserFactory(username="bob", groups=["Approvers"])
    dave = UserFactory(username="dave", groups=["Approvers"])
    ticket = TicketFactory(
        applicant=UserFactory(username="alice"),
        applications=[ApplicationFactory(name="web")],
        submitted=True,
    )
    return ticket, bob, dave


@pytest.mark.django_db(transaction=True)
def test_two_approvers_approving_at_once_mint_once(racing_ticket, redis_client):
    ticket, bob, dave = racing_ticket
    outcomes = _race(
        [
            lambda: services.approve_ticket(ticket=ticket, approver=bob),
            lambda: services.approve_ticket(ticket=ticket, approver=dave),
        ]
    )
    refusals = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(refusals) == 1
    assert isinstance(refusals[0], InvalidTransition)
    assert refusals[0].message == f"Ticket {ticket.ticket_no} is APPROVED; it cannot be approved."

    assert Approval.objects.filter(ticket=ticket).count() == 1
    assert AuditEvent.objects.filter(ticket_id=ticket.pk, action="ticket.approved").count() == 1
    assert (
        AuditEvent.objects.filter(ticket_id=ticket.pk, action="authorization.minted").count() == 1
    )
    assert history(ticket).count((State.IN_APPROVAL, State.APPROVED)) == 1
    winner = Approval.objects.get(ticket=ticket).approver
    assert winner in (bob, dave)
    assert token_value(redis_client)["ticketId"] == ticket.pk


@pytest.mark.django_db(transaction=True)
def test_approve_and_reject_at_once_leave_one_decision(racing_ticket, redis_client):
    ticket, bob, dave = racing_ticket
    node = ticket.current_node
    outcomes = _race(
        [
            lambda: services.approve_ticket(ticket=ticket, approver=bob, node=node),
            lambda: services.reject_ticket(ticket=ticket, approver=dave, reason="No", node=node),
        ]
    )
    assert len([o for o in outcomes if isinstance(o, InvalidTransition)]) == 1
    ticket.refresh_from_db()
    decision = Approval.objects.get(ticket=ticket)
    if decision.decision == Approval.Decision.APPROVE:
        assert ticket.state == State.APPROVED
        assert token_value(redis_client) is not None
    else:
        assert ticket.state == State.REJECTED
        assert redis_client.keys("*") == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_creation_gives_distinct_ticket_numbers():
    work_order = RedeployWorkOrderFactory()
    ApplicationFactory(name="web")
    applicants = [UserFactory() for _ in range(6)]
    tickets = _race(
        [
            lambda user=user: services.create_ticket(
                applicant=user, work_order=work_order, application_names=["web"]
            )
            for user in applicants
        ]
    )
    assert len({ticket.ticket_no for ticket in tickets}) == 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_drafts_respect_the_limit():
    work_order = RedeployWorkOrderFactory()
    ApplicationFactory(name="web")
    alice = UserFactory(username="alice")
    outcomes = _race(
        [
            lambda: services.create_ticket(
                applicant=alice, work_order=work_order, application_names=["web"]
            )
            for _ in range(5)
        ]
    )
    assert len([o for o in outcomes if isinstance(o, Ticket)]) == 3
    assert len([o for o in outcomes if isinstance(o, ValidationFailed)]) == 2
    assert Ticket.objects.filter(applicant=alice, state=State.NEW).count() == 3
