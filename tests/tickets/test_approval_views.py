"""The approvers' queue page: who sees what, approve/reject/batch through a confirmation."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import (
    ApplicationFactory,
    BindingFactory,
    ClusterFactory,
    GroupFactory,
    TicketFactory,
    UserFactory,
    approval_chain,
)
from tests.support import flash, page
from tickets import grants, services
from tickets.models import Approval, ApprovalNode, Ticket

pytestmark = pytest.mark.django_db

QUEUE = reverse("tickets:approvals")
CONFIRM = reverse("tickets:approval-confirm")


@pytest.fixture
def web():
    app = ApplicationFactory(name="web", tags=[{"key": "team", "value": "shop"}])
    BindingFactory(
        application=app,
        cluster=ClusterFactory(name="prod-east"),
        namespace="shop",
        deployment_name="web-frontend",
    )
    BindingFactory(
        application=app,
        cluster=ClusterFactory(name="prod-west"),
        namespace="shop-west",
        deployment_name="web-frontend",
    )
    return app


@pytest.fixture
def unbound():
    return ApplicationFactory(name="batch-jobs", tags=[])


@pytest.fixture
def as_bob(client, bob):
    client.force_login(bob)
    return client


def vote(ticket: Ticket) -> str:
    return f"{ticket.ticket_no}:{ticket.current_node_id}"


def queued(response) -> list[str]:
    return [item.ticket.ticket_no for item in response.context["queue"].items]


def three_node_chain(work_order) -> tuple[ApprovalNode, ApprovalNode]:
    """Leads (OR_BATCH) then Owners (USER_SPECIFIED), after an informed-only node."""
    _, leads, owners = approval_chain(
        work_order,
        (ApprovalNode.Type.CC_TO, "Watchers", "Watchers"),
        (ApprovalNode.Type.OR_BATCH, "Leads", "Approvers"),
        (ApprovalNode.Type.USER_SPECIFIED, "Owners", "Owners"),
    )
    return leads, owners


# --- access ------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    for path in (QUEUE, CONFIRM):
        response = client.get(path)
        assert response.status_code == 302
        assert response.url == f"{reverse('login')}?next={path}"


def test_confirm_accepts_post_only(as_bob):
    assert as_bob.get(CONFIRM).status_code == 405


# --- who sees which ticket ---------------------------------------------------------------------


def test_queue_lists_others_tickets_waiting_for_my_vote_oldest_first(
    client, alice, bob, carol, web
):
    first = TicketFactory(applicant=alice, applications=[web], submitted=True)
    carols = TicketFactory(applicant=carol, applications=[web], submitted=True)
    TicketFactory(applicant=alice, applications=[web])  # a draft: nothing to decide yet
    TicketFactory(applicant=alice, applications=[web], approved_by=carol)  # decided

    client.force_login(bob)
    assert queued(client.get(QUEUE)) == [first.ticket_no, carols.ticket_no]
    client.force_login(carol)
    assert queued(client.get(QUEUE)) == [first.ticket_no]  # never my own
    client.force_login(alice)
    assert queued(client.get(QUEUE)) == []


def test_queue_hides_tickets_i_already_voted_on(client, work_order, alice, bob, carol, web):
    three_node_chain(work_order)
    owner = UserFactory(username="olga", groups=["Owners", "Approvers"])
    ticket = TicketFactory(
        applicant=alice, applications=[web], submitted=True, approvers={"Owners": "olga"}
    )
    client.force_login(bob)
    assert queued(client.get(QUEUE)) == [ticket.ticket_no]
    services.approve_ticket(ticket=ticket, approver=bob)
    # Now at Owners: bob voted already; olga was chosen for it.
    assert queued(client.get(QUEUE)) == []
    client.force_login(owner)
    assert queued(client.get(QUEUE)) == [ticket.ticket_no]


def test_user_specified_node_waits_for_the_chosen_user_only(client, work_order, alice, carol, web):
    three_node_chain(work_order)
    picked = UserFactory(username="picked", groups=["Owners"])
    other_owner = UserFactory(username="other-owner", groups=["Owners"])
    ticket = TicketFactory(
        applicant=alice, applications=[web], submitted=True, approvers={"Owners": "picked"}
    )
    client.force_login(picked)
    assert queued(client.get(QUEUE)) == []  # Leads first
    services.approve_ticket(ticket=ticket, approver=carol)
    assert queued(client.get(QUEUE)) == [ticket.ticket_no]
    client.force_login(other_owner)
    assert queued(client.get(QUEUE)) == []


def test_non_members_see_the_empty_state(client, alice, web):
    TicketFactory(applicant=alice, applications=[web], submitted=True)
    for user in (UserFactory(username="dave"), UserFactory(username="root", is_superuser=True)):
        client.force_login(user)
        response = client.get(QUEUE)
        assert response.context["queue"].items == []
        assert "Nothing waits for you" in page(response)
        assert 'name="vote"' not in page(response)


# --- what the queue shows ----------------------------------------------------------------------


def test_queue_shows_entries_applicant_reason_and_bindings(as_bob, alice, web, unbound):
    ticket = TicketFactory(
        applicant=alice,
        applications=[web, unbound],
        reason="Roll the <new> certificates",
        submitted=True,
    )
    html = page(as_bob.get(QUEUE))
    assert ticket.ticket_no in html
    assert "alice" in html
    assert escape("Roll the <new> certificates") in html
    assert '<th scope="col">Application Name</th>' in html and "team:shop" in html
    for text in ("prod-east", "prod-west", "shop-west", "web-frontend"):
        assert text in html
    assert "No deployment is bound to this application" in html
    # Approve, reject and batch forms all go to the confirmation with the node seen.
    assert html.count(f'value="{vote(ticket)}"') == 3
    assert 'form="batch-approve"' in html


def test_queue_query_count_is_the_same_for_2_and_10_tickets(as_bob, alice, web):
    def fill(count: int) -> None:
        for n in range(count):
            app = ApplicationFactory(name=f"svc-{Ticket.objects.count()}-{n}")
            BindingFactory(application=app, cluster=ClusterFactory(name=f"c-{app.name}"))
            TicketFactory(applicant=UserFactory(), applications=[app, web], submitted=True)

    fill(2)
    with CaptureQueriesContext(connection) as two:
        response = as_bob.get(QUEUE)
    assert len(response.context["queue"].items) == 2
    fill(8)
    with CaptureQueriesContext(connection) as ten:
        response = as_bob.get(QUEUE)
    assert len(response.context["queue"].items) == 10
    assert len(ten) == len(two)
    binding_reads = [q for q in ten.captured_queries if "redeploy_deploymentbinding" in q["sql"]]
    assert len(binding_reads) == 1


# --- approve -----------------------------------------------------------------------------------


def test_approve_shows_a_confirmation_then_approves(as_bob, alice, bob, web, redis_client):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)

    response = as_bob.post(
        CONFIRM, {"decision": "approve", "vote": vote(ticket), "comment": "ok for tonight"}
    )
    assert response.status_code == 200
    html = page(response)
    assert "Confirm the approval" in html
    for text in (ticket.ticket_no, "web", "prod-east", "shop", "prod-west", "shop-west"):
        assert text in html
    assert "web-frontend" in html and "2h 0m" in html
    assert 'name="confirmed" value="yes"' in html
    assert "ok for tonight" in html  # the comment carries over
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.IN_APPROVAL
    assert not Approval.objects.exists()

    response = as_bob.post(
        CONFIRM,
        {
            "decision": "approve",
            "vote": vote(ticket),
            "comment": "ok for tonight",
            "confirmed": "yes",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == QUEUE
    assert flash(response) == [f"Ticket {ticket.ticket_no} approved."]
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.APPROVED
    assert Approval.objects.get(ticket=ticket).comment == "ok for tonight"
    assert (
        grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")
        is not None
    )
    assert "Nothing waits for you" in page(response)


def test_approving_a_middle_node_says_what_it_waits_for(as_bob, work_order, alice, web):
    three_node_chain(work_order)
    UserFactory(username="olga", groups=["Owners"])
    ticket = TicketFactory(
        applicant=alice, applications=[web], submitted=True, approvers={"Owners": "olga"}
    )
    response = as_bob.post(
        CONFIRM, {"decision": "approve", "vote": vote(ticket), "confirmed": "yes"}, follow=True
    )
    assert flash(response) == [
        f"Ticket {ticket.ticket_no}: your approval is recorded; it now waits for node Owners."
    ]


# --- reject ------------------------------------------------------------------------------------


def test_reject_needs_a_reason_then_rejects(as_bob, alice, web, redis_client):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)

    response = as_bob.post(CONFIRM, {"decision": "reject", "vote": vote(ticket), "reason": "no"})
    assert response.status_code == 200
    assert "Confirm the rejection" in page(response)
    assert "nothing will be authorized" in page(response)
    assert "prod-east" in page(response)

    response = as_bob.post(
        CONFIRM, {"decision": "reject", "vote": vote(ticket), "reason": "  ", "confirmed": "yes"}
    )
    assert response.status_code == 200
    assert "Give a reason for the rejection." in page(response)
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.IN_APPROVAL

    response = as_bob.post(
        CONFIRM,
        {"decision": "reject", "vote": vote(ticket), "reason": "Freeze week", "confirmed": "yes"},
        follow=True,
    )
    assert flash(response) == [f"Ticket {ticket.ticket_no} rejected."]
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.REJECTED
    assert ticket.state_changes.last().note == "Freeze week"
    assert redis_client.keys("APPLICATION:REDEPLOY:*") == []


# --- batch -------------------------------------------------------------------------------------


def test_batch_approval_confirms_every_ticket_then_decides_each(as_bob, alice, carol, web):
    api = ApplicationFactory(name="api")
    BindingFactory(
        application=api,
        cluster=ClusterFactory(name="prod-east"),
        namespace="core",
        deployment_name="api-server",
    )
    first = TicketFactory(applicant=alice, applications=[web], submitted=True)
    second = TicketFactory(applicant=carol, applications=[api], submitted=True)
    third = TicketFactory(
        applicant=UserFactory(username="erin"), applications=[web], submitted=True
    )
    votes = [vote(first), vote(second), vote(third)]

    response = as_bob.post(CONFIRM, {"decision": "approve", "vote": votes, "comment": "batch"})
    html = page(response)
    assert [item.ticket for item, _ in response.context["items"]] == [first, second, third]
    assert "Approve 3 tickets" in html
    for text in ("api-server", "core", "web-frontend", "carol", "erin"):
        assert text in html
    assert html.count('name="vote"') == 3

    # Meanwhile carol decides the first one: that vote is refused, the others count.
    services.approve_ticket(ticket=first, approver=carol)
    response = as_bob.post(
        CONFIRM,
        {"decision": "approve", "vote": votes, "comment": "batch", "confirmed": "yes"},
        follow=True,
    )
    assert flash(response) == [
        f"{first.ticket_no}: Node Approval of ticket {first.ticket_no} was already decided.",
        f"Ticket {second.ticket_no} approved.",
        f"Ticket {third.ticket_no} approved.",
    ]
    assert {t.state for t in Ticket.objects.filter(pk__in=[second.pk, third.pk])} == {
        Ticket.State.APPROVED
    }
    assert Approval.objects.filter(approver__username="bob").count() == 2
    assert set(
        AuditEvent.objects.filter(action=Action.AUTHORIZATION_MINTED).values_list(
            "ticket_no", flat=True
        )
    ) == {first.ticket_no, second.ticket_no, third.ticket_no}


def test_batch_with_nothing_checked_goes_back_with_a_message(as_bob, alice, web):
    TicketFactory(applicant=alice, applications=[web], submitted=True)
    response = as_bob.post(CONFIRM, {"decision": "approve", "comment": "x"}, follow=True)
    assert response.redirect_chain[-1][0] == QUEUE
    assert flash(response) == ["Check at least one ticket."]


def test_garbled_votes_are_refused(as_bob, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    for value in (ticket.ticket_no, f"{ticket.ticket_no}:x", ":3"):
        response = as_bob.post(CONFIRM, {"decision": "approve", "vote": value}, follow=True)
        assert flash(response) == ["The tickets to vote on were not understood; reload the page."]
    response = as_bob.post(CONFIRM, {"decision": "maybe", "vote": vote(ticket)}, follow=True)
    assert response.redirect_chain[-1][0] == QUEUE
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.IN_APPROVAL


# --- stale and refused votes ---------------------------------------------------------------------


def test_a_stale_vote_is_refused_not_moved_to_the_next_node(as_bob, work_order, alice, carol, web):
    _, owners = three_node_chain(work_order)
    # A second OR_BATCH node bob could decide too: his stale vote must not land on it.
    ApprovalNode.objects.filter(pk=owners.pk).update(
        node_type=ApprovalNode.Type.OR_BATCH, group=GroupFactory(name="Approvers")
    )
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    seen = vote(ticket)  # bob loads the queue: Leads
    services.approve_ticket(ticket=ticket, approver=carol)  # carol decides Leads meanwhile

    response = as_bob.post(
        CONFIRM, {"decision": "approve", "vote": seen, "confirmed": "yes"}, follow=True
    )
    assert flash(response) == [
        f"{ticket.ticket_no}: Node Leads of ticket {ticket.ticket_no} was already decided."
    ]
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL and ticket.current_node_id == owners.pk
    assert not Approval.objects.filter(approver__username="bob").exists()


def test_a_stale_vote_on_a_finished_ticket_names_the_reason(as_bob, alice, carol, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    seen = vote(ticket)
    services.reject_ticket(ticket=ticket, approver=carol, reason="no")
    # bob may no longer see the ticket, but he was its approver: he hears why.
    response = as_bob.post(CONFIRM, {"decision": "approve", "vote": seen}, follow=True)
    assert ticket.ticket_no in page(response)
    response = as_bob.post(
        CONFIRM, {"decision": "approve", "vote": seen, "confirmed": "yes"}, follow=True
    )
    assert flash(response) == [
        f"{ticket.ticket_no}: Node Approval of ticket {ticket.ticket_no} was already decided."
    ]


def test_votes_on_tickets_one_may_not_see_are_not_found(client, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    client.force_login(UserFactory(username="dave"))
    for data in (
        {"decision": "approve", "vote": vote(ticket)},
        {"decision": "approve", "vote": vote(ticket), "confirmed": "yes"},
        {"decision": "approve", "vote": f"19990101000001:{ticket.current_node_id}"},
        {"decision": "approve", "vote": f"{ticket.ticket_no}:999999"},
    ):
        response = client.post(CONFIRM, data, follow=True)
        assert response.redirect_chain[-1][0] == QUEUE
        assert len(flash(response)) == 1 and flash(response)[0].endswith("does not exist.")
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.IN_APPROVAL


def test_the_applicant_hears_the_services_refusal(client, alice, bob, web):
    alice.groups.add(bob.groups.get())
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    client.force_login(alice)
    response = client.post(
        CONFIRM, {"decision": "approve", "vote": vote(ticket), "confirmed": "yes"}, follow=True
    )
    assert flash(response) == [f"{ticket.ticket_no}: You cannot decide on your own ticket."]
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.IN_APPROVAL


def test_confirm_needs_the_csrf_token(alice, bob, web):
    from django.test import Client

    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    response = client.post(
        CONFIRM, {"decision": "approve", "vote": vote(ticket), "confirmed": "yes"}
    )
    assert response.status_code == 403
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.IN_APPROVAL
