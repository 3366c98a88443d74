"""tickets.rules: the state machine, who edits, who decides, and the same rule as a query."""

import itertools

import pytest
from django.utils import translation

from cratos.exceptions import InvalidTransition, PermissionRefused
from tests.factories import (
    ApplicationFactory,
    RedeployWorkOrderFactory,
    TicketFactory,
    UserFactory,
    approval_chain,
)
from tickets import services
from tickets.models import ApprovalNode, Ticket
from tickets.rules import (
    applicant_refusal,
    decidable_by,
    decision_refusal,
    entries_refusal,
    transition_refusal,
)

State = Ticket.State
Type = ApprovalNode.Type

ALLOWED = {
    (State.NEW, State.IN_APPROVAL),
    (State.NEW, State.CLOSED),
    (State.IN_APPROVAL, State.APPROVED),
    (State.IN_APPROVAL, State.REJECTED),
    (State.IN_APPROVAL, State.CLOSED),
    (State.APPROVED, State.COMPLETED),
}
VERB = {
    State.IN_APPROVAL: "submitted",
    State.APPROVED: "approved",
    State.REJECTED: "rejected",
    State.CLOSED: "cancelled",
    State.COMPLETED: "completed",
}


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    list(itertools.product(State.values, [s for s in State.values if s != State.NEW])),
)
def test_transition_table(from_state, to_state):
    ticket = Ticket(state=from_state, ticket_no="20260101000001")
    refusal = transition_refusal(ticket=ticket, to_state=to_state)
    if (from_state, to_state) in ALLOWED:
        assert refusal is None
    else:
        assert isinstance(refusal, InvalidTransition)
        assert refusal.status_code == 409
        assert refusal.message == (
            f"Ticket 20260101000001 is {from_state}; it cannot be {VERB[to_state]}."
        )


def test_an_approved_ticket_can_never_be_rejected():
    refusal = transition_refusal(ticket=Ticket(state=State.APPROVED), to_state=State.REJECTED)
    assert "is APPROVED; it cannot be rejected" in refusal.message


@pytest.mark.django_db
def test_applicant_refusal():
    alice, bob = UserFactory(), UserFactory()
    ticket = Ticket(applicant=alice, ticket_no="T1")
    assert applicant_refusal(ticket=ticket, user=alice, action="cancel") is None
    refusal = applicant_refusal(ticket=ticket, user=bob, action="cancel")
    assert isinstance(refusal, PermissionRefused)
    assert refusal.message == "Only the applicant may cancel ticket T1."


@pytest.mark.django_db
@pytest.mark.parametrize("state", State.values)
def test_entries_are_editable_by_the_applicant_while_new(state):
    alice, bob = UserFactory(), UserFactory()
    ticket = Ticket(applicant=alice, ticket_no="T1", state=state)
    refusal = entries_refusal(ticket=ticket, user=alice)
    if state == State.NEW:
        assert refusal is None
    else:
        assert isinstance(refusal, InvalidTransition)
        assert refusal.message == f"Ticket T1 is {state}; its entries are frozen."
    assert isinstance(entries_refusal(ticket=ticket, user=bob), PermissionRefused)


@pytest.mark.django_db
def test_decision_refusal_says_why():
    RedeployWorkOrderFactory()
    alice = UserFactory(groups=["Approvers"])
    bob = UserFactory(groups=["Approvers"])
    ticket = TicketFactory(applicant=alice, applications=[ApplicationFactory()], submitted=True)

    assert decision_refusal(ticket=ticket, user=bob) is None
    assert decision_refusal(ticket=ticket, user=bob, reject=True) is None
    own = decision_refusal(ticket=ticket, user=alice)
    assert (type(own), own.message) == (PermissionRefused, "You cannot decide on your own ticket.")
    stranger = decision_refusal(ticket=ticket, user=UserFactory())
    assert stranger.message == "Only members of Approvers may decide on node Approval."

    services.approve_ticket(ticket=ticket, approver=bob)
    ticket.refresh_from_db()
    done = decision_refusal(ticket=ticket, user=bob, reject=True)
    assert isinstance(done, InvalidTransition)
    assert done.message == f"Ticket {ticket.ticket_no} is APPROVED; it cannot be rejected."


@pytest.mark.django_db
def test_a_decision_refusal_names_the_node_in_the_readers_language():
    RedeployWorkOrderFactory()
    ticket = TicketFactory(
        applicant=UserFactory(), applications=[ApplicationFactory()], submitted=True
    )
    refusal = decision_refusal(ticket=ticket, user=UserFactory())
    with translation.override("zh-hans"):
        assert str(refusal.message) == "只有 Approvers 的成员可以审批节点 审批。"
    assert str(refusal.message) == "Only members of Approvers may decide on node Approval."


@pytest.mark.django_db
def test_decidable_by_agrees_with_decision_refusal():
    """Every (ticket, user) pair of a mixed population: the query and the rule agree."""
    work_order = RedeployWorkOrderFactory()
    approval_chain(
        work_order,
        (Type.OR_BATCH, "Leads", "Leads"),
        (Type.USER_SPECIFIED, "Owners", "Owners"),
        (Type.CC_TO, "Watchers", "Watchers"),
    )
    alice = UserFactory(username="alice", groups=["Leads", "Owners"])
    lead = UserFactory(username="lead", groups=["Leads"])
    lead_owner = UserFactory(username="lead_owner", groups=["Leads", "Owners"])
    owner = UserFactory(username="owner", groups=["Owners"])
    other_owner = UserFactory(username="other_owner", groups=["Owners"])
    watcher = UserFactory(username="watcher", groups=["Watchers"])
    root = UserFactory(username="root", is_superuser=True)
    users = [alice, lead, lead_owner, owner, other_owner, watcher, root]
    web = ApplicationFactory(name="web")

    def ticket(applicant, pick, *, steps=()):
        t = TicketFactory(applicant=applicant, applications=[web])
        services.submit_ticket(ticket=t, actor=applicant, approvers={"Owners": pick})
        for step in steps:
            step(t)
        t.refresh_from_db()
        return t

    tickets = [
        TicketFactory(applicant=alice, applications=[web]),  # NEW
        ticket(alice, "owner"),  # at Leads
        ticket(lead, "owner"),  # at Leads, applicant is a lead
        ticket(alice, "lead_owner"),  # at Leads; lead_owner is picked for Owners
        ticket(
            alice,
            "owner",
            steps=[lambda t: services.approve_ticket(ticket=t, approver=lead_owner)],
        ),  # at Owners, owner picked, lead_owner decided Leads
        ticket(
            alice,
            "lead_owner",
            steps=[lambda t: services.approve_ticket(ticket=t, approver=lead)],
        ),  # at Owners, lead_owner picked
        ticket(
            alice,
            "owner",
            steps=[
                lambda t: services.approve_ticket(ticket=t, approver=lead),
                lambda t: services.approve_ticket(ticket=t, approver=owner),
            ],
        ),  # APPROVED
        ticket(
            alice,
            "owner",
            steps=[lambda t: services.reject_ticket(ticket=t, approver=lead, reason="No")],
        ),  # REJECTED
    ]
    disagreements = []
    decidable_pairs = 0
    for user in users:
        listed = set(Ticket.objects.filter(decidable_by(user)).values_list("pk", flat=True))
        for t in tickets:
            t = Ticket.objects.get(pk=t.pk)
            allowed = decision_refusal(ticket=t, user=user) is None
            decidable_pairs += allowed
            if allowed != (t.pk in listed):
                disagreements.append((t.state, t.current_node, user.username, allowed))
    assert disagreements == []
    assert decidable_pairs == 7  # the population really exercises both answers
