"""Who may do what: every role and every action, through every entry point that offers the action
(pages, admin, API), each asserted allowed or refused, and a refusal changes nothing.

The policy is tickets/rules.py, redeploy/rules.py and redeploy.audit_selectors.may_review_audit;
the roles are the groups of cratos/roles.py, set up as seed_demo sets them up.
"""

from dataclasses import dataclass

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from cratos.roles import ensure_roles
from redeploy.models import RedeployOperation
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import ApplicationFactory, TicketFactory, UserFactory
from tickets import grants
from tickets.models import Ticket, TicketEntry

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Refused:
    """Refused, in these words (pages show them, the API answers 403 with them)."""

    words: str


OK = "allowed"
LOGIN = "login"  # pages and admin: sent to log in; API: 401
HIDDEN = "hidden"  # 404 "Ticket ... does not exist.": they learn nothing about the ticket
NOT_APPL = Refused("Only the applicant may")
OWN = Refused("You cannot decide on your own ticket.")
NOT_MEMB = Refused("Only members of Approvers may decide on node Approval.")
NOT_REVK = Refused(
    "Only approvers of work order APPLICATION_REDEPLOY or administrators may revoke its "
    "authorizations."
)
NO_PERM = Refused("You may not redeploy applications.")
NO_AUTH = Refused("Unauthorized access")
NOT_REVW = Refused("Only reviewers may read the audit log.")

ROLES = (
    "anonymous",
    "requester",  # alice, in Requesters: the ticket is hers
    "other_requester",  # erin, in Requesters: the ticket is alice's
    "approver",  # bob, in Approvers, staff (decides in the admin)
    "applicant_approver",  # ann, in Approvers and Requesters, staff: the ticket is hers
    "reviewer",  # carol, in Reviewers
    "admin",  # root, superuser
    "admin_applicant",  # sue, superuser and in Approvers: the ticket is hers
)
# The ticket acted on is the applicant's; for the others it is alice's.
APPLICANTS = {"requester", "applicant_approver", "admin_applicant"}

# fmt: off
POLICY = {
    #            anonymous requester other_req approver  appl_appr reviewer  admin     admin_appl
    "create":   (LOGIN,    OK,       OK,       OK,       OK,       OK,       OK,       OK),
    "submit":   (LOGIN,    OK,       HIDDEN,   NOT_APPL, OK,       NOT_APPL, NOT_APPL, OK),
    "approve":  (LOGIN,    OWN,      HIDDEN,   OK,       OWN,      NOT_MEMB, NOT_MEMB, OWN),
    "reject":   (LOGIN,    OWN,      HIDDEN,   OK,       OWN,      NOT_MEMB, NOT_MEMB, OWN),
    "cancel":   (LOGIN,    OK,       HIDDEN,   NOT_APPL, OK,       NOT_APPL, NOT_APPL, OK),
    "revoke":   (LOGIN,    NOT_REVK, HIDDEN,   OK,       OK,       NOT_REVK, OK,       OK),
    "redeploy": (LOGIN,    OK,       NO_AUTH,  NO_PERM,  OK,       NO_PERM,  NO_AUTH,  OK),
    "audit":    (LOGIN,    NOT_REVW, NOT_REVW, NOT_REVW, NOT_REVW, OK,       OK,       OK),
    "export":   (LOGIN,    NOT_REVW, NOT_REVW, NOT_REVW, NOT_REVW, OK,       OK,       OK),
}
# fmt: on
# Where each action exists. The admin admits staff only: others land on its login page.
CHANNELS = {
    "create": ("page", "api"),
    "submit": ("page", "api"),
    "approve": ("page", "admin", "api"),
    "reject": ("page", "admin", "api"),
    "cancel": ("page", "api"),
    "revoke": ("page",),
    "redeploy": ("page", "api"),
    "audit": ("page", "admin"),
    "export": ("page",),
}
# The state the ticket must be in for the action to make sense.
TICKET_STATE = {
    "submit": "NEW",
    "approve": "IN_APPROVAL",
    "reject": "IN_APPROVAL",
    "cancel": "IN_APPROVAL",
    "revoke": "APPROVED",
    "redeploy": "APPROVED",
}
CASES = [
    pytest.param(action, role, channel, expected, id=f"{action}-{role}-{channel}")
    for action, outcomes in POLICY.items()
    for role, expected in zip(ROLES, outcomes, strict=True)
    for channel in CHANNELS[action]
]


# -- the people and the ticket -------------------------------------------------------------------


@pytest.fixture
def people():
    groups = ensure_roles()

    def user(username, *names, **flags):
        user = UserFactory(username=username, **flags)
        user.groups.add(*(groups[name] for name in names))
        return user

    return {
        "anonymous": None,
        "requester": user("alice", "Requesters"),
        "other_requester": user("erin", "Requesters"),
        "approver": user("bob", "Approvers", is_staff=True),
        "applicant_approver": user("ann", "Approvers", "Requesters", is_staff=True),
        "reviewer": user("carol", "Reviewers"),
        "admin": user("root", is_staff=True, is_superuser=True),
        "admin_applicant": user("sue", "Approvers", is_staff=True, is_superuser=True),
        # Approves the tickets that revoke and redeploy need; never an actor here.
        "dave": user("dave", "Approvers"),
    }


def ticket_for(action: str, role: str, people) -> Ticket | None:
    web = ApplicationFactory(name="web", tags=[{"key": "team", "value": "shop"}])
    state = TICKET_STATE.get(action)
    if state is None:
        return None
    applicant = people[role] if role in APPLICANTS else people["requester"]
    return TicketFactory(
        applicant=applicant,
        applications=[web],
        submitted=state == "IN_APPROVAL",
        approved_by=people["dave"] if state == "APPROVED" else None,
    )


# -- doing it -----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # of the first response
    location: str  # where it redirected to, if it did
    told: str  # the page shown in the end (with its messages), or the API's message
    body: dict | None = None  # the API's JSON

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.location!r}, ...{self.told[-400:]!r})"


def _page_answer(response) -> Answer:
    """What a browser user sees: the first status and redirect, then the page they end on."""
    chain = getattr(response, "redirect_chain", None)
    if chain:
        (location, status), *_ = chain
    elif response.status_code in (301, 302):
        location, status = response.url, response.status_code
    else:
        location, status = "", response.status_code
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return Answer(status=status, location=location, told=content.decode(errors="replace"))


def on_page(client: Client, action: str, ticket: Ticket | None) -> Answer:
    if action == "create":
        data = {"applications": ["web"], "reason": "New config", "action": "draft"}
        return _page_answer(client.post(reverse("tickets:create"), data, follow=True))
    if action in ("submit", "cancel"):
        url = reverse(f"tickets:{action}", args=[ticket.ticket_no])
        return _page_answer(client.post(url, follow=True))
    if action in ("approve", "reject"):
        data = {
            "decision": action,
            "vote": f"{ticket.ticket_no}:{ticket.current_node_id}",
            "reason": "Not now",
            "confirmed": "yes",
        }
        return _page_answer(client.post(reverse("tickets:approval-confirm"), data, follow=True))
    if action == "revoke":
        entry = ticket.entries.get()
        url = reverse("tickets:revoke", args=[ticket.ticket_no, entry.pk])
        return _page_answer(client.post(url, {"reason": "Wrong release"}, follow=True))
    if action == "redeploy":
        data = {"application": "web", "namespace": "shop", "deployment": "web", "cluster": ""}
        return _page_answer(client.post(reverse("redeploy:request"), data | {"confirmed": "1"}))
    if action == "audit":
        return _page_answer(client.get(reverse("audit:events"), follow=True))
    if action == "export":
        return _page_answer(client.get(reverse("audit:events"), {"_export": "csv"}, follow=True))
    raise AssertionError(action)


def in_admin(client: Client, action: str, ticket: Ticket | None) -> Answer:
    if action in ("approve", "reject"):
        data = {
            "action": f"{action}_selected",
            ACTION_CHECKBOX_NAME: [ticket.pk],
            "index": 0,
            "post": "yes",
            "reason": "Not now",
        }
        url = reverse("admin:tickets_ticket_changelist")
        return _page_answer(client.post(url, data, follow=True))
    if action == "audit":
        return _page_answer(client.get(reverse("admin:audit_auditevent_changelist")))
    raise AssertionError(action)


def through_api(client: APIClient, action: str, ticket: Ticket | None) -> Answer:
    if action == "create":
        body = {"workOrderKey": "APPLICATION_REDEPLOY", "applications": ["web"], "reason": "r"}
        response = client.post("/api/v1/tickets/", body, format="json")
    elif action == "redeploy":
        body = {"applicationName": "web", "namespace": "shop", "deploymentName": "web"}
        response = client.post("/api/v1/redeploys/", body, format="json")
    else:
        body = {"reason": "Not now"} if action == "reject" else {}
        url = f"/api/v1/tickets/{ticket.ticket_no}/{action}/"
        response = client.post(url, body, format="json")
    body = response.json()
    told = body.get("message", "") if response.status_code >= 400 else ""
    return Answer(status=response.status_code, location="", told=told, body=body)


def took_effect(action: str, actor, ticket: Ticket | None) -> bool:
    if action == "create":
        return actor is not None and Ticket.objects.filter(applicant=actor).exists()
    if action in ("audit", "export"):
        return False  # reading changes nothing; the answer says whether it was shown
    if action == "redeploy":
        return RedeployOperation.objects.filter(requested_by=actor).exists()
    ticket.refresh_from_db()
    if action == "revoke":
        entry = ticket.entries.get()
        live = grants.live_grant(
            kind=REDEPLOY_GRANTS, username=ticket.applicant.get_username(), application_name="web"
        )
        return entry.state == TicketEntry.State.REVOKED and live is None
    expected = {
        "submit": Ticket.State.IN_APPROVAL,
        "approve": Ticket.State.APPROVED,
        "reject": Ticket.State.REJECTED,
        "cancel": Ticket.State.CLOSED,
    }[action]
    return ticket.state == expected


# -- the matrix -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "role", "channel", "expected"), CASES)
def test_authorization_matrix(people, action, role, channel, expected):
    actor = people[role]
    ticket = ticket_for(action, role, people)
    if channel == "api":
        client = APIClient()
        if actor is not None:
            client.force_authenticate(actor)
        answer = through_api(client, action, ticket)
    else:
        client = Client()
        if actor is not None:
            client.force_login(actor)
        answer = (in_admin if channel == "admin" else on_page)(client, action, ticket)
    if channel == "admin" and actor is not None and not actor.is_staff:
        expected = LOGIN  # the admin admits staff only

    effect = took_effect(action, actor, ticket)
    if expected == OK:
        assert answer.status in (200, 201, 202, 302), answer
        assert not answer.location.startswith(("/accounts/login/", "/admin/login/")), answer
        if action in ("audit", "export"):
            assert answer.status == 200
        else:
            assert effect, f"{role} was let through but nothing happened: {answer.told[-300:]}"
        return

    assert not effect, f"{role} was refused but the {action} happened anyway"
    if expected == LOGIN:
        if channel == "api":
            assert answer.status == 401
            assert answer.body["error"] == "not_authenticated"
        else:
            login = "/admin/login/" if channel == "admin" else "/accounts/login/"
            assert answer.status == 302 and answer.location.startswith(login), answer
    elif expected == HIDDEN:
        words = f"Ticket {ticket.ticket_no} does not exist."
        if channel == "api":
            assert (answer.status, answer.body["error"]) == (404, "not_found")
        else:
            assert answer.status in (302, 404), answer
        assert words in answer.told
    else:
        if channel == "api":
            assert answer.status == 403, answer
            assert answer.body["error"] in ("forbidden", "unauthorized_access")
        elif channel == "admin" and action == "audit":
            assert answer.status == 403  # the admin's own permission check, its own words
            return
        else:
            assert answer.status in (302, 403), answer
        assert expected.words in answer.told, answer.told[-500:]
        if action == "redeploy":
            # A refused redeploy is audited, in the words the user was given.
            refusal = AuditEvent.objects.get(action="redeploy.refused")
            assert refusal.message == expected.words
