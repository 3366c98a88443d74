"""tickets.selectors: the seed's entries table, the approver's queue, live authorizations."""

import pytest

from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import (
    ApplicationFactory,
    TicketFactory,
    UserFactory,
    approval_chain,
)
from tests.support import consume
from tickets import grants, selectors, services
from tickets.models import ApprovalNode, Ticket

pytestmark = pytest.mark.django_db

Type = ApprovalNode.Type


@pytest.fixture
def web():
    return ApplicationFactory(
        name="web", tags=[{"key": "team", "value": "shop"}, {"key": "tier", "value": "front"}]
    )


# --- the entries table -----------------------------------------------------------------------


def test_entries_table_is_the_seeds(alice, work_order, web):
    ApplicationFactory(name="api", tags=[])
    ticket = TicketFactory(applicant=alice, applications=[web, ApplicationFactory(name="api")])
    assert selectors.entries_table(ticket=ticket) == (
        ["Application Name", "Tags"],
        [["web", "team:shop,tier:front"], ["api", ""]],
    )


def test_entries_markdown_is_the_seeds(alice, work_order, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    assert selectors.entries_markdown(ticket=ticket) == (
        "| Application Name | Tags |\n| --- | --- |\n| web | team:shop,tier:front |"
    )


def test_entries_markdown_escapes_pipes_and_newlines(alice, work_order):
    odd = ApplicationFactory(name="odd", tags=[{"key": "note", "value": "a|b\nc"}])
    ticket = TicketFactory(applicant=alice, applications=[odd])
    assert selectors.entries_markdown(ticket=ticket).splitlines()[-1] == ("| odd | note:a\\|b c |")


def test_entries_are_a_snapshot_later_edits_do_not_rewrite_them(alice, bob, work_order, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    before = selectors.entries_table(ticket=ticket)

    web.tags = [{"key": "team", "value": "payments"}]
    web.description = "moved"
    web.save()
    assert selectors.entries_table(ticket=ticket) == before
    assert selectors.entries_markdown(ticket=ticket).endswith("| web | team:shop,tier:front |")

    web.delete()
    ticket = selectors.ticket_by_no(ticket_no=ticket.ticket_no)
    assert selectors.entries_table(ticket=ticket) == before


# --- reads of tickets ------------------------------------------------------------------------


def test_ticket_by_no_and_tickets_of(alice, bob, work_order, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    TicketFactory(applicant=bob, applications=[web])
    loaded = selectors.ticket_by_no(ticket_no=ticket.ticket_no)
    assert loaded == ticket
    assert [a.approver for a in loaded.approvals.all()] == [bob]
    assert [c.to_state for c in loaded.state_changes.all()] == ["NEW", "IN_APPROVAL", "APPROVED"]
    assert list(selectors.tickets_of(applicant=alice)) == [ticket]
    with pytest.raises(Ticket.DoesNotExist):
        selectors.ticket_by_no(ticket_no="nope")


def test_work_order_by_key(work_order):
    loaded = selectors.work_order_by_key(key="APPLICATION_REDEPLOY")
    assert [node.group.name for node in loaded.nodes.all()] == ["Approvers"]


# --- the approver's queue --------------------------------------------------------------------


def test_awaiting_decision_lists_others_tickets_in_approval_oldest_first(alice, bob, work_order):
    carol = UserFactory(username="carol", groups=["Approvers"])
    first = TicketFactory(applicant=alice, submitted=True)
    second = TicketFactory(applicant=carol, submitted=True)
    TicketFactory(applicant=alice)  # NEW: nothing to decide yet
    TicketFactory(applicant=alice, approved_by=carol)  # decided already

    assert list(selectors.tickets_awaiting_decision(user=bob)) == [first, second]
    # Never one's own ticket, even as a member of the approving group.
    assert list(selectors.tickets_awaiting_decision(user=carol)) == [first]
    assert list(selectors.tickets_awaiting_decision(user=alice)) == []
    assert list(selectors.tickets_awaiting_decision(user=UserFactory(is_superuser=True))) == []


def test_approval_queue_holds_the_oldest_and_counts_every_waiting_ticket(alice, bob, work_order):
    tickets = [TicketFactory(applicant=alice, submitted=True) for _ in range(3)]

    queue = selectors.approval_queue(user=bob, limit=2)
    assert ([item.ticket for item in queue.items], queue.waiting) == (tickets[:2], 3)
    queue = selectors.approval_queue(user=bob, limit=3)
    assert ([item.ticket for item in queue.items], queue.waiting) == (tickets, 3)


def test_the_badge_counts_waiting_tickets_only_as_far_as_it_shows(alice, bob, work_order):
    for _ in range(3):
        TicketFactory(applicant=alice, submitted=True)

    assert selectors.count_awaiting_decision(user=bob, at_most=2) == 2
    assert selectors.count_awaiting_decision(user=bob, at_most=10) == 3
    assert selectors.count_awaiting_decision(user=alice, at_most=10) == 0


def test_awaiting_decision_follows_the_node_type(alice, work_order):
    _, leads, _ = approval_chain(
        work_order,
        (Type.CC_TO, "Watchers", "Watchers"),
        (Type.OR_BATCH, "Leads", "Leads"),
        (Type.USER_SPECIFIED, "Owners", "Owners"),
    )
    watcher = UserFactory(groups=["Watchers"])
    lead = UserFactory(groups=["Leads"])
    picked = UserFactory(username="picked", groups=["Owners"])
    other_owner = UserFactory(groups=["Owners"])
    ticket = TicketFactory(applicant=alice, submitted=True, approvers={"Owners": "picked"})
    assert ticket.current_node == leads

    queue = selectors.tickets_awaiting_decision
    assert (list(queue(user=lead)), list(queue(user=watcher)), list(queue(user=picked))) == (
        [ticket],
        [],
        [],
    )
    services.approve_ticket(ticket=ticket, approver=lead)
    assert list(queue(user=picked)) == [ticket]
    assert list(queue(user=other_owner)) == []
    assert list(queue(user=lead)) == []  # already voted on it


def test_awaiting_decision_costs_the_same_queries_for_many_tickets(
    alice, bob, work_order, django_assert_num_queries
):
    TicketFactory(applicant=alice, submitted=True)
    # the nodes of bob's groups, tickets at an APPLICATION_OWNER node (none here), tickets
    with django_assert_num_queries(3):
        assert len(list(selectors.tickets_awaiting_decision(user=bob))) == 1
    for _ in range(2):
        TicketFactory(applicant=alice, submitted=True)
    TicketFactory(applicant=UserFactory(), submitted=True)
    with django_assert_num_queries(3):
        assert len(list(selectors.tickets_awaiting_decision(user=bob))) == 4
    # Someone in no approving group: nothing to ask the tickets.
    newcomer = UserFactory()
    with django_assert_num_queries(1):
        assert list(selectors.tickets_awaiting_decision(user=newcomer)) == []


# --- live authorizations ---------------------------------------------------------------------


def test_live_authorizations_with_seconds_left(alice, bob, work_order, web):
    ticket = TicketFactory(
        applicant=alice, applications=[web, ApplicationFactory(name="api")], approved_by=bob
    )
    live = selectors.live_authorizations(user=alice)
    assert [(item.entry.name, item.grant.ticket_no) for item in live] == [
        ("web", ticket.ticket_no),
        ("api", ticket.ticket_no),
    ]
    assert all(7190 <= item.seconds_left <= 7200 for item in live)
    entry, token = live[0]  # still a plain pair for callers that unpack it
    assert (entry, token.seconds_left()) == (live[0].entry, live[0].seconds_left)
    assert selectors.live_authorizations(user=bob) == []


def test_live_authorizations_leave_out_used_and_expired_ones(alice, bob, work_order, web):
    TicketFactory(
        applicant=alice, applications=[web, ApplicationFactory(name="api")], approved_by=bob
    )
    consume(username="alice", application_name="web")
    assert [item.entry.name for item in selectors.live_authorizations(user=alice)] == ["api"]
    grants.revoke(kind=REDEPLOY_GRANTS, username="alice", application_name="api")
    assert selectors.live_authorizations(user=alice) == []


def test_a_newer_ticket_replaces_the_authorization_of_an_older_one(alice, bob, work_order, web):
    carol = UserFactory(groups=["Approvers"])
    TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    newer = TicketFactory(applicant=alice, applications=[web], approved_by=carol)
    (item,) = selectors.live_authorizations(user=alice)
    assert (item.entry.ticket, item.grant.ticket_id) == (newer, newer.pk)
