from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import ApplicationFactory, UserFactory
from tests.support import client_for
from tickets import grants
from tickets.models import Ticket, TicketEntry

pytestmark = pytest.mark.django_db

TICKETS = "/api/v1/tickets/"
AUTHORIZATIONS = "/api/v1/authorizations/"
PASSWORD = "pw-for-tests-123"  # UserFactory's


def action_url(ticket_no: str, action: str = "") -> str:
    return f"{TICKETS}{ticket_no}/{action + '/' if action else ''}"


@pytest.fixture
def web():
    return ApplicationFactory(
        name="web", tags=[{"key": "team", "value": "shop"}, {"key": "env", "value": "prod"}]
    )


def create(client, applications=("web",), reason="Roll out the config change") -> dict:
    response = client.post(
        TICKETS,
        {
            "workOrderKey": "APPLICATION_REDEPLOY",
            "applications": list(applications),
            "reason": reason,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def submitted(client, **body) -> dict:
    ticket = create(client)
    response = client.post(action_url(ticket["ticketNo"], "submit"), body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def test_create_submit_approve_then_authorizations(alice, bob, web, redis_client):
    applicant = client_for(alice)

    ticket = create(applicant)
    assert ticket["state"] == "NEW"
    assert ticket["workOrderKey"] == "APPLICATION_REDEPLOY"
    assert ticket["applicant"] == "alice"
    assert ticket["reason"] == "Roll out the config change"
    # The id is what entries/{id}/revoke/ takes.
    entry_id = TicketEntry.objects.get(ticket__ticket_no=ticket["ticketNo"]).pk
    assert ticket["entries"] == [
        {
            "id": entry_id,
            "applicationName": "web",
            "tags": [{"key": "team", "value": "shop"}, {"key": "env", "value": "prod"}],
            "tagsDisplay": "team:shop,env:prod",
            "state": "DRAFT",
            "authorizationExpiresAt": None,
        }
    ]
    assert ticket["entriesMarkdown"] == (
        "| Application Name | Tags |\n| --- | --- |\n| web | team:shop,env:prod |"
    )
    assert ticket["currentNode"] is None
    assert ticket["createdAt"].endswith("Z")
    assert ticket["submittedAt"] is None
    ticket_no = ticket["ticketNo"]

    response = applicant.post(action_url(ticket_no, "submit"), format="json")
    assert response.status_code == 200
    assert response.json()["state"] == "IN_APPROVAL"
    assert response.json()["currentNode"] == {"name": "Approval", "type": "OR_BATCH"}
    assert response.json()["submittedAt"]

    approver = client_for(bob)
    assert approver.get(action_url(ticket_no)).status_code == 200
    response = approver.post(action_url(ticket_no, "approve"), {"comment": "ok"}, format="json")
    assert response.status_code == 200
    approved = response.json()
    assert approved["state"] == "APPROVED"
    assert approved["currentNode"] is None
    assert approved["approvals"][0]["node"] == "Approval"
    assert approved["approvals"][0]["decision"] == "APPROVE"
    assert approved["approvals"][0]["approver"] == "bob"
    assert approved["approvals"][0]["comment"] == "ok"
    assert [(c["fromState"], c["toState"], c["actor"]) for c in approved["stateHistory"]] == [
        ("", "NEW", "alice"),
        ("NEW", "IN_APPROVAL", "alice"),
        ("IN_APPROVAL", "APPROVED", "bob"),
    ]
    assert approved["entries"][0]["state"] == "AUTHORIZED"
    assert approved["entries"][0]["authorizationExpiresAt"].endswith("Z")

    response = applicant.get(AUTHORIZATIONS)
    assert response.status_code == 200
    [grant] = response.json()
    assert set(grant) == {"applicationName", "ticketId", "ticketNo", "expires", "secondsLeft"}
    assert grant["applicationName"] == "web"
    assert grant["ticketNo"] == ticket_no
    assert grant["ticketId"] == Ticket.objects.get(ticket_no=ticket_no).pk
    assert grant["expires"] == approved["entries"][0]["authorizationExpiresAt"]
    assert 7190 <= grant["secondsLeft"] <= 7200
    key = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
    assert 7190 <= redis_client.ttl(key) <= 7200

    # The approver holds no authorization of alice's.
    assert approver.get(AUTHORIZATIONS).json() == []


def test_authorizations_only_live_ones_of_the_caller(alice, bob, web):
    ApplicationFactory(name="api")
    applicant = client_for(alice)
    for application in ("web", "api"):
        ticket = create(applicant, applications=[application])
        applicant.post(action_url(ticket["ticketNo"], "submit"), format="json")
        client_for(bob).post(action_url(ticket["ticketNo"], "approve"), format="json")
    grants.revoke(kind=REDEPLOY_GRANTS, username="alice", application_name="api")

    live = applicant.get(AUTHORIZATIONS).json()

    assert [grant["applicationName"] for grant in live] == ["web"]
    assert client_for(UserFactory(username="mallory")).get(AUTHORIZATIONS).json() == []


def test_submit_without_reason_is_refused(alice, web):
    applicant = client_for(alice)
    ticket = create(applicant, reason="")

    response = applicant.post(action_url(ticket["ticketNo"], "submit"), format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "invalid", "message": "Give a reason for the redeploy."}
    response = applicant.post(
        action_url(ticket["ticketNo"], "submit"), {"reason": "Now with a reason"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["reason"] == "Now with a reason"


def test_reject_needs_a_reason(alice, bob, web):
    ticket_no = submitted(client_for(alice))["ticketNo"]
    approver = client_for(bob)

    for body in ({}, {"reason": ""}, {"reason": "   "}):
        response = approver.post(action_url(ticket_no, "reject"), body, format="json")
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid",
            "message": "Give a reason for the rejection.",
        }

    response = approver.post(action_url(ticket_no, "reject"), {"reason": "Not now"}, format="json")
    assert response.status_code == 200
    rejected = response.json()
    assert rejected["state"] == "REJECTED"
    assert rejected["approvals"][0]["decision"] == "REJECT"
    assert rejected["approvals"][0]["comment"] == "Not now"
    assert rejected["entries"][0]["state"] == "CANCELLED"
    assert rejected["stateHistory"][-1]["note"] == "Not now"


@pytest.mark.parametrize("superuser", [False, True])
def test_self_approval_is_refused(web, superuser):
    applicant = UserFactory(
        username="selfish", groups=["Approvers"], is_superuser=superuser, is_staff=superuser
    )
    client = client_for(applicant)
    ticket_no = submitted(client)["ticketNo"]

    for action, body in (("approve", {}), ("reject", {"reason": "mine"})):
        response = client.post(action_url(ticket_no, action), body, format="json")
        assert response.status_code == 403
        assert response.json() == {
            "error": "forbidden",
            "message": "You cannot decide on your own ticket.",
        }
    assert Ticket.objects.get(ticket_no=ticket_no).state == Ticket.State.IN_APPROVAL


def test_who_may_decide(alice, bob, web):
    ticket_no = submitted(client_for(alice))["ticketNo"]
    reviewer = UserFactory(username="carol", groups=["Reviewers"])

    # A reviewer sees the ticket but is not an approver.
    response = client_for(reviewer).post(action_url(ticket_no, "approve"), format="json")
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "message": "Only members of Approvers may decide on node Approval.",
    }
    # Someone with no business with it learns nothing about it.
    response = client_for(UserFactory(username="mallory")).post(
        action_url(ticket_no, "approve"), format="json"
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": f"Ticket {ticket_no} does not exist.",
    }

    approver = client_for(bob)
    assert approver.post(action_url(ticket_no, "approve"), format="json").status_code == 200
    # Approved stays approved: a staff approver (who still sees it) cannot flip it to rejected.
    bob.is_staff = True
    bob.save()
    response = approver.post(action_url(ticket_no, "reject"), {"reason": "oops"}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "message": f"Ticket {ticket_no} is APPROVED; it cannot be rejected.",
    }
    assert Ticket.objects.get(ticket_no=ticket_no).state == Ticket.State.APPROVED


def test_user_specified_node_approver_chosen_on_submit(alice, bob, web, lead_node):
    erin = UserFactory(username="erin", groups=["Leads"])
    frank = UserFactory(username="frank", groups=["Leads"])
    applicant = client_for(alice)
    ticket_no = create(applicant)["ticketNo"]
    submit = action_url(ticket_no, "submit")

    refusals = [
        ({}, "Choose the approver for node Lead."),
        ({"approvers": {"Lead": "bob"}}, "bob is not a candidate approver of node Lead."),
        ({"approvers": {"Lead": "nobody"}}, "nobody is not a candidate approver of node Lead."),
    ]
    for body, message in refusals:
        response = applicant.post(submit, body, format="json")
        assert response.status_code == 400
        assert response.json() == {"error": "invalid", "message": message}

    response = applicant.post(submit, {"approvers": {"Lead": "erin"}}, format="json")
    assert response.status_code == 200
    assert response.json()["chosenApprovers"] == [{"node": "Lead", "approver": "erin"}]
    assert response.json()["currentNode"] == {"name": "Approval", "type": "OR_BATCH"}

    response = client_for(bob).post(action_url(ticket_no, "approve"), format="json")
    assert response.json()["state"] == "IN_APPROVAL"
    assert response.json()["currentNode"] == {"name": "Lead", "type": "USER_SPECIFIED"}

    # Another candidate of the node was not chosen: not theirs to see or decide.
    response = client_for(frank).post(action_url(ticket_no, "approve"), format="json")
    assert response.status_code == 404

    response = client_for(erin).post(action_url(ticket_no, "approve"), format="json")
    assert response.status_code == 200
    assert response.json()["state"] == "APPROVED"
    assert [a["approver"] for a in response.json()["approvals"]] == ["bob", "erin"]


def test_applicant_cannot_choose_themselves(web, lead_node):
    applicant = UserFactory(username="lead-alice", groups=["Leads"])
    client = client_for(applicant)
    ticket_no = create(client)["ticketNo"]

    response = client.post(
        action_url(ticket_no, "submit"), {"approvers": {"Lead": "lead-alice"}}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid",
        "message": "You cannot choose yourself as an approver.",
    }


def test_cancel(alice, web):
    applicant = client_for(alice)
    ticket_no = create(applicant)["ticketNo"]
    staff = client_for(UserFactory(username="stella", is_staff=True))

    response = staff.post(action_url(ticket_no, "cancel"), format="json")
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "message": f"Only the applicant may cancel ticket {ticket_no}.",
    }

    response = applicant.post(
        action_url(ticket_no, "cancel"), {"reason": "No longer"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["state"] == "CLOSED"
    assert response.json()["entries"][0]["state"] == "CANCELLED"

    response = applicant.post(action_url(ticket_no, "cancel"), format="json")
    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "message": f"Ticket {ticket_no} is CLOSED; it cannot be cancelled.",
    }
    response = applicant.post(action_url(ticket_no, "submit"), format="json")
    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "message": f"Ticket {ticket_no} is CLOSED; it cannot be submitted.",
    }


def test_cancel_in_approval(alice, web):
    applicant = client_for(alice)
    ticket_no = submitted(applicant)["ticketNo"]

    response = applicant.post(action_url(ticket_no, "cancel"), format="json")

    assert response.status_code == 200
    assert response.json()["state"] == "CLOSED"


def test_who_sees_a_ticket(alice, bob, web):
    ticket_no = create(client_for(alice))["ticketNo"]
    url = action_url(ticket_no)
    auditor = UserFactory(username="auditor", permissions=["audit.view_auditevent"])
    viewer = UserFactory(username="viewer", permissions=["tickets.view_ticket"])
    seers = [
        alice,
        UserFactory(username="stella", is_staff=True),
        UserFactory(username="carol", groups=["Reviewers"]),
        auditor,
        viewer,
    ]
    for user in seers:
        response = client_for(user).get(url)
        assert response.status_code == 200, user
        assert response.json()["ticketNo"] == ticket_no

    # Approvers see it while they may decide on it: not as a draft, yes once submitted.
    assert client_for(bob).get(url).status_code == 404
    client_for(alice).post(action_url(ticket_no, "submit"), format="json")
    assert client_for(bob).get(url).status_code == 200

    response = client_for(UserFactory(username="mallory")).get(url)
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": f"Ticket {ticket_no} does not exist.",
    }


def test_unknown_ticket(alice):
    client = client_for(alice)
    for url in (action_url("20990101999999"), action_url("20990101999999", "approve")):
        response = client.get(url) if url.endswith("999/") else client.post(url, format="json")
        assert response.status_code == 404
        assert response.json() == {
            "error": "not_found",
            "message": "Ticket 20990101999999 does not exist.",
        }


def test_list_is_my_tickets_paginated(alice, web):
    mine = client_for(alice)
    ApplicationFactory(name="api")
    ApplicationFactory(name="db")
    numbers = [create(mine, applications=[name])["ticketNo"] for name in ("web", "api", "db")]
    create(client_for(UserFactory(username="other")))

    response = mine.get(TICKETS, {"pageSize": 2})

    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 3
    assert [t["ticketNo"] for t in page["results"]] == numbers[::-1][:2]
    assert page["results"][0]["applications"] == ["db"]
    assert page["results"][0]["state"] == "NEW"
    assert page["next"]
    second = mine.get(page["next"]).json()
    assert [t["ticketNo"] for t in second["results"]] == numbers[:1]

    response = mine.get(TICKETS, {"page": 99})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_token_authentication(alice, bob, web):
    out = StringIO()
    call_command("drf_create_token", "alice", stdout=out)
    key = Token.objects.get(user=alice).key
    assert key in out.getvalue()
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    ticket = create(client)
    response = client.post(action_url(ticket["ticketNo"], "submit"), format="json")
    assert response.status_code == 200
    assert client.get(AUTHORIZATIONS).status_code == 200

    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get(TICKETS)
    assert response.status_code in (401, 403)
    assert response.json() == {"error": "authentication_failed", "message": "Invalid token."}


def test_session_authentication_needs_csrf(alice, web):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password=PASSWORD)
    body = {"workOrderKey": "APPLICATION_REDEPLOY", "applications": ["web"], "reason": "r"}

    assert client.get(TICKETS).status_code == 200
    response = client.post(TICKETS, body, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert response.json()["message"].startswith("CSRF Failed")
    assert not Ticket.objects.exists()

    secret = "a" * 32
    client.cookies["csrftoken"] = secret
    response = client.post(TICKETS, body, format="json", HTTP_X_CSRFTOKEN=secret)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", TICKETS),
        ("post", TICKETS),
        ("get", AUTHORIZATIONS),
        ("get", action_url("20990101000001")),
        ("post", action_url("20990101000001", "approve")),
    ],
)
def test_anonymous_is_refused(method, url):
    response = getattr(APIClient(), method)(url, format="json")

    assert response.status_code in (401, 403)
    assert response.json() == {
        "error": "not_authenticated",
        "message": "Authentication credentials were not provided.",
    }


def test_browsable_api_and_options_do_not_break(alice, web):
    client = client_for(alice)
    ticket_no = create(client)["ticketNo"]

    assert client.get(action_url(ticket_no), HTTP_ACCEPT="text/html").status_code == 200
    assert client.get(TICKETS, HTTP_ACCEPT="text/html").status_code == 200
    assert client.options(TICKETS).status_code == 200
    assert client.options(action_url(ticket_no, "approve")).status_code == 200
