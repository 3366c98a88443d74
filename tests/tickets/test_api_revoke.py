"""POST /api/v1/tickets/{ticketNo}/entries/{entryId}/revoke/: revocation over the API."""

import pytest
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import ApplicationFactory, TicketFactory, UserFactory
from tests.support import client_for
from tickets.models import Ticket, TicketEntry

pytestmark = pytest.mark.django_db


def revoke_url(ticket_no: str, entry_id: int) -> str:
    return f"/api/v1/tickets/{ticket_no}/entries/{entry_id}/revoke/"


def key_of(name: str) -> str:
    return REDEPLOY_GRANTS.key(username="alice", application_name=name)


@pytest.fixture
def web(approved_two) -> TicketEntry:
    return approved_two.entries.get(name="web")


def test_an_approver_revokes_one_authorization(approved_two, web, bob, redis_client):
    assert redis_client.exists(key_of("web")) == 1

    response = client_for(bob).post(
        revoke_url(approved_two.ticket_no, web.pk), {"reason": "Wrong release"}, format="json"
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["ticketNo"] == approved_two.ticket_no
    assert body["state"] == Ticket.State.APPROVED  # api is still authorized
    states = {entry["applicationName"]: entry["state"] for entry in body["entries"]}
    assert states == {"web": "REVOKED", "api": "AUTHORIZED"}
    assert redis_client.exists(key_of("web")) == 0
    assert redis_client.exists(key_of("api")) == 1
    web.refresh_from_db()
    assert web.state == TicketEntry.State.REVOKED
    event = AuditEvent.objects.get(action=Action.AUTHORIZATION_REVOKED)
    assert (event.actor_username, event.application_name, event.message) == (
        "bob",
        "web",
        "Wrong release",
    )


def test_the_last_revocation_completes_the_ticket(approved_two, bob):
    client = client_for(bob)
    for entry in approved_two.entries.all():
        response = client.post(
            revoke_url(approved_two.ticket_no, entry.pk), {"reason": "Stop"}, format="json"
        )
        assert response.status_code == 200, response.json()
    assert response.json()["state"] == Ticket.State.COMPLETED
    assert response.json()["success"] is False


def test_the_requester_is_refused(approved_two, web, alice, redis_client):
    response = client_for(alice).post(
        revoke_url(approved_two.ticket_no, web.pk), {"reason": "Not needed"}, format="json"
    )

    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "message": "Only approvers of work order APPLICATION_REDEPLOY or administrators may "
        "revoke its authorizations.",
    }
    assert redis_client.exists(key_of("web")) == 1
    web.refresh_from_db()
    assert web.state == TicketEntry.State.AUTHORIZED
    assert not AuditEvent.objects.filter(action=Action.AUTHORIZATION_REVOKED).exists()


@pytest.mark.parametrize("body", [{"reason": ""}, {"reason": "   "}, {}])
def test_a_reason_is_required(approved_two, web, bob, redis_client, body):
    response = client_for(bob).post(revoke_url(approved_two.ticket_no, web.pk), body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid",
        "message": "Give a reason for the revocation.",
    }
    assert redis_client.exists(key_of("web")) == 1
    web.refresh_from_db()
    assert web.state == TicketEntry.State.AUTHORIZED


def test_the_body_is_checked_for_shape(approved_two, web, bob, redis_client):
    client = client_for(bob)
    url = revoke_url(approved_two.ticket_no, web.pk)

    unknown = client.post(url, {"reason": "x", "notify": False}, format="json")
    not_text = client.post(url, {"reason": 42}, format="json")

    assert (unknown.status_code, unknown.json()["fields"]) == (400, {"notify": ["Unknown field."]})
    assert not_text.status_code == 400
    assert "reason" in not_text.json()["fields"]
    assert redis_client.exists(key_of("web")) == 1


def test_an_unknown_entry_is_not_found(approved_two, web, bob, alice):
    other = TicketFactory(applicant=alice, applications=[ApplicationFactory(name="db")])
    client = client_for(bob)

    missing = client.post(
        revoke_url(approved_two.ticket_no, 999_999), {"reason": "x"}, format="json"
    )
    elsewhere = client.post(
        revoke_url(approved_two.ticket_no, other.entries.get().pk), {"reason": "x"}, format="json"
    )
    no_ticket = client.post(revoke_url("NOPE", web.pk), {"reason": "x"}, format="json")

    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not_found", "message": f"Ticket {approved_two.ticket_no} has no entry 999999."},
    )
    assert elsewhere.status_code == 404
    assert (no_ticket.status_code, no_ticket.json()["message"]) == (
        404,
        "Ticket NOPE does not exist.",
    )


def test_someone_who_may_not_see_the_ticket_learns_nothing(approved_two, web, redis_client):
    response = client_for(UserFactory(username="dave")).post(
        revoke_url(approved_two.ticket_no, web.pk), {"reason": "x"}, format="json"
    )

    assert (response.status_code, response.json()["message"]) == (
        404,
        f"Ticket {approved_two.ticket_no} does not exist.",
    )
    assert redis_client.exists(key_of("web")) == 1


def test_a_revoked_entry_cannot_be_revoked_again(approved_two, web, bob):
    client = client_for(bob)
    url = revoke_url(approved_two.ticket_no, web.pk)
    assert client.post(url, {"reason": "once"}, format="json").status_code == 200

    again = client.post(url, {"reason": "twice"}, format="json")

    assert again.status_code == 409
    assert again.json()["error"] == "invalid_transition"
    assert AuditEvent.objects.filter(action=Action.AUTHORIZATION_REVOKED).count() == 1


def test_anonymous_callers_must_authenticate(approved_two, web, redis_client):
    response = APIClient().post(
        revoke_url(approved_two.ticket_no, web.pk), {"reason": "x"}, format="json"
    )

    assert response.status_code == 401
    assert redis_client.exists(key_of("web")) == 1
