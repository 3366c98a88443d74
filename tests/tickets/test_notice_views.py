"""The approve/reject links of approval notices and the confirmation page they open."""

import re
from urllib.parse import quote

import pytest
from django.core import mail, signing
from django.urls import reverse

from cratos.audit.models import AuditEvent
from tests.factories import (
    ApprovalNodeFactory,
    GroupFactory,
    TicketFactory,
    UserFactory,
)
from tests.tickets.conftest import SITE_URL
from tickets import services
from tickets.models import Approval, DecisionLinkUse, Ticket
from tickets.notice_links import DECISION_LINK_SALT
from tickets.notifications import notify_ticket_submitted

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("notices")]


@pytest.fixture
def alice(work_order):
    return UserFactory(username="alice", groups=["Approvers"])


@pytest.fixture
def ticket(alice, bob, dave, web, django_capture_on_commit_callbacks):
    """alice's submitted ticket; bob and dave each got an approval request."""
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    with django_capture_on_commit_callbacks(execute=True):
        notify_ticket_submitted(ticket=ticket)
    return ticket


def links_of(user) -> dict[str, str]:
    """{"Approve": path, "Reject": path} from the approval request mailed to `user`."""
    [message] = [m for m in mail.outbox if m.to == [user.email]]
    found = dict(re.findall(r"^(Approve|Reject): (\S+)$", message.body, re.MULTILINE))
    assert set(found) == {"Approve", "Reject"}
    return {action: url.removeprefix(SITE_URL) for action, url in found.items()}


def as_user(client, user):
    client.force_login(user)
    return client


def test_the_page_names_work_order_and_step_in_the_readers_language(client, ticket, bob):
    response = as_user(client, bob).get(links_of(bob)["Approve"], HTTP_ACCEPT_LANGUAGE="zh-hans")

    page = response.content.decode()
    assert "<dd>审批</dd>" in page and "<dd>应用重新部署 <small" in page
    assert "Approval" not in page and "Application redeploy" not in page


def test_the_link_needs_a_login(client, ticket, bob):
    url = links_of(bob)["Approve"]

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={quote(url)}"


def test_the_page_shows_ticket_node_and_entries(client, ticket, bob):
    response = as_user(client, bob).get(links_of(bob)["Approve"])

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Approve ticket {ticket.ticket_no}?" in page
    assert "Approval" in page
    assert "<td>web</td>" in page and "<td>team:shop</td>" in page
    assert ticket.reason in page
    assert '<button type="submit">Approve</button>' in page
    # Opening the page decides nothing.
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL
    assert not DecisionLinkUse.objects.exists()


def test_the_approve_link_approves_on_confirmation(client, ticket, bob, redis_client):
    response = as_user(client, bob).post(links_of(bob)["Approve"], {"text": "looks fine"})

    assert response.status_code == 302
    assert response["Location"] == reverse("tickets:detail", args=[ticket.ticket_no])
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.APPROVED
    approval = ticket.approvals.get()
    assert (approval.approver, approval.decision, approval.comment) == (
        bob,
        Approval.Decision.APPROVE,
        "looks fine",
    )
    assert redis_client.exists("APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web")
    use = DecisionLinkUse.objects.get()
    assert (use.ticket, use.node, use.user, use.decision) == (
        ticket,
        approval.node,
        bob,
        Approval.Decision.APPROVE,
    )


def test_the_reject_link_needs_a_reason(client, ticket, bob):
    url = links_of(bob)["Reject"]
    client = as_user(client, bob)

    response = client.post(url, {"text": "  "})

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL
    assert not DecisionLinkUse.objects.exists()

    response = client.post(url, {"text": "not during the sale"})

    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.REJECTED
    assert ticket.approvals.get().comment == "not during the sale"


def test_another_user_is_refused(client, ticket, bob, dave):
    url = links_of(bob)["Approve"]
    client = as_user(client, dave)

    for response in (client.get(url), client.post(url, {"text": ""})):
        assert response.status_code == 403
        assert "This decision link was sent to another approver" in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL


def test_a_link_works_once(client, ticket, bob):
    links = links_of(bob)
    client = as_user(client, bob)
    assert client.post(links["Approve"], {"text": ""}).status_code == 302

    for url in (links["Approve"], links["Reject"]):  # the pair shares one use
        response = client.post(url, {"text": "changed my mind"})
        assert response.status_code == 409
        assert "This decision link was already used." in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.APPROVED
    assert ticket.approvals.count() == 1


def test_a_recorded_use_refuses_the_link_even_while_the_node_waits(client, ticket, bob):
    url = links_of(bob)["Approve"]
    token = url.rstrip("/").rsplit("/", 1)[1]
    nonce = signing.loads(token, salt=DECISION_LINK_SALT)["k"]
    DecisionLinkUse.objects.create(
        nonce=nonce, ticket=ticket, node=ticket.current_node, user=bob, decision="APPROVE"
    )

    response = as_user(client, bob).get(url)

    assert response.status_code == 409
    assert "already used" in response.content.decode()


def test_a_link_expires_when_its_node_is_decided(client, ticket, bob, dave):
    url = links_of(bob)["Approve"]
    services.approve_ticket(ticket=ticket, approver=dave)

    response = as_user(client, bob).get(url)

    assert response.status_code == 409
    assert (
        f"This decision link has expired: ticket {ticket.ticket_no} no longer waits on step "
        "Approval." in response.content.decode()
    )


def test_a_link_expires_when_the_ticket_moves_to_the_next_node(
    client, alice, bob, dave, web, work_order, django_capture_on_commit_callbacks
):
    ApprovalNodeFactory(
        work_order=work_order, position=2, name="Ops", group=GroupFactory(name="Ops")
    )
    bob.groups.add(GroupFactory(name="Ops"))
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    with django_capture_on_commit_callbacks(execute=True):
        notify_ticket_submitted(ticket=ticket)
    url = links_of(bob)["Approve"]
    services.approve_ticket(ticket=ticket, approver=dave)
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL  # now waiting on step Ops

    response = as_user(client, bob).post(url, {"text": ""})

    assert response.status_code == 409
    assert "no longer waits on step Approval" in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.current_node.name == "Ops"


def test_a_link_expires_when_the_ticket_is_withdrawn(client, ticket, alice, bob):
    url = links_of(bob)["Reject"]
    services.cancel_ticket(ticket=ticket, actor=alice)

    assert as_user(client, bob).get(url).status_code == 409


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # signature changed
        lambda token: signing.dumps(
            {**signing.loads(token, salt=DECISION_LINK_SALT), "d": "REJECT"}, salt="guessed"
        ),
        lambda token: "not-a-token",
    ],
    ids=["signature", "other-salt", "garbage"],
)
def test_a_tampered_link_is_refused(client, ticket, bob, tamper):
    url = links_of(bob)["Approve"]
    token = url.rstrip("/").rsplit("/", 1)[1]

    response = as_user(client, bob).post(
        reverse("notices:decide", args=[tamper(token)]), {"text": "x"}
    )

    assert response.status_code == 403
    assert "This decision link is not valid." in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL


def test_a_refusal_is_shown_in_the_services_words(client, ticket, bob):
    url = links_of(bob)["Approve"]
    bob.groups.clear()
    client = as_user(client, bob)
    refusal = "Only members of Approvers may decide on node Approval."

    page = client.get(url)
    assert page.status_code == 200
    assert refusal in page.content.decode()
    assert '<button type="submit">Approve</button>' not in page.content.decode()

    response = client.post(url, {"text": ""})
    assert response.status_code == 403
    assert refusal in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL
    assert not DecisionLinkUse.objects.exists()  # refused: the link was not spent


def test_a_decision_by_link_records_the_address(client, ticket, bob, redis_client):
    as_user(client, bob).post(links_of(bob)["Reject"], {"text": "No"}, REMOTE_ADDR="203.0.113.7")

    event = AuditEvent.objects.get(action="ticket.rejected", ticket_no=ticket.ticket_no)
    assert event.request_ip == "203.0.113.7"
