"""The audit log keeps the client address of every ticket step, whichever entry point took it
(pages, API, admin, signed links): the export's Request IP column is not empty."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from cratos.audit.models import AuditEvent
from tests.factories import TicketFactory, UserFactory
from tests.support import client_for
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

IP = "203.0.113.7"
AT = {"REMOTE_ADDR": IP}
TICKETS = "/api/v1/tickets/"


def addresses(ticket_no: str) -> dict[str, str | None]:
    """{action: request IP} of the ticket's events (the last one of each action)."""
    return dict(
        AuditEvent.objects.filter(ticket_no=ticket_no)
        .order_by("pk")
        .values_list("action", "request_ip")
    )


def test_the_pages_record_the_address_of_each_step(client, alice, bob, web, redis_client):
    client.force_login(alice)
    client.post(
        reverse("tickets:create"),
        {"applications": ["web"], "reason": "New config", "action": "submit"},
        **AT,
    )
    ticket = Ticket.objects.get()
    client.force_login(bob)
    client.post(
        reverse("tickets:approval-confirm"),
        {"decision": "approve", "vote": f"{ticket.ticket_no}:{ticket.current_node_id}"}
        | {"confirmed": "yes"},
        **AT,
    )
    entry = ticket.entries.get()
    client.post(
        reverse("tickets:revoke", args=[ticket.ticket_no, entry.pk]), {"reason": "Stop"}, **AT
    )

    recorded = addresses(ticket.ticket_no)
    for action in ("created", "entry_added", "submitted", "approved"):
        assert recorded[f"ticket.{action}"] == IP
    assert recorded["authorization.revoked"] == IP


def test_a_cancel_on_its_page_records_the_address(client, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    client.force_login(alice)

    client.post(reverse("tickets:cancel", args=[ticket.ticket_no]), {"reason": "Not now"}, **AT)

    assert addresses(ticket.ticket_no)["ticket.cancelled"] == IP
    assert addresses(ticket.ticket_no)["ticket.created"] is None  # made by the factory


def test_the_api_records_the_address_of_each_step(alice, bob, web, redis_client):
    requester, approver = client_for(alice), client_for(bob)
    body = {"workOrderKey": "APPLICATION_REDEPLOY", "applications": ["web"], "reason": "Go"}
    ticket_no = requester.post(TICKETS, body, format="json", **AT).json()["ticketNo"]
    requester.post(f"{TICKETS}{ticket_no}/submit/", {}, format="json", **AT)
    approved = approver.post(f"{TICKETS}{ticket_no}/approve/", {}, format="json", **AT).json()
    entry_id = approved["entries"][0]["id"]
    approver.post(
        f"{TICKETS}{ticket_no}/entries/{entry_id}/revoke/", {"reason": "Stop"}, format="json", **AT
    )

    recorded = addresses(ticket_no)
    for action in ("created", "submitted", "approved"):
        assert recorded[f"ticket.{action}"] == IP
    assert recorded["authorization.revoked"] == IP


@pytest.mark.parametrize(
    ("action", "who", "event"),
    [("reject", "bob", "ticket.rejected"), ("cancel", "alice", "ticket.cancelled")],
)
def test_the_api_records_the_address_of_an_ending(alice, bob, web, action, who, event):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    client = client_for({"alice": alice, "bob": bob}[who])

    response = client.post(
        f"{TICKETS}{ticket.ticket_no}/{action}/", {"reason": "No"}, format="json", **AT
    )

    assert response.status_code == 200, response.json()
    assert addresses(ticket.ticket_no)[event] == IP


def test_an_admin_approval_records_the_address(client, alice, web, redis_client):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    admin_user = UserFactory(
        username="root", is_staff=True, is_superuser=True, groups=["Approvers"]
    )
    client.force_login(admin_user)
    data = {"action": "approve_selected", ACTION_CHECKBOX_NAME: [ticket.pk], "index": 0}

    client.post(
        reverse("admin:tickets_ticket_changelist"), {**data, "post": "yes", "comment": ""}, **AT
    )

    assert addresses(ticket.ticket_no)["ticket.approved"] == IP
