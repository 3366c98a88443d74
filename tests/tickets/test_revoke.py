"""Revoking a live authorization: the service, its rule, and its page."""

import pytest
from django.urls import reverse

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action
from cratos.exceptions import (
    InvalidTransition,
    PermissionRefused,
    ServiceUnavailable,
    ValidationFailed,
)
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import (
    ApplicationFactory,
    ApprovalNodeFactory,
    BindingFactory,
    ClusterFactory,
    GroupFactory,
    TicketFactory,
    UserFactory,
    WorkOrderFactory,
)
from tickets import grants, revocations, selectors
from tickets.models import ApprovalNode, Ticket, TicketEntry
from tickets.rules import revoke_refusal

pytestmark = pytest.mark.django_db


@pytest.fixture
def web():
    app = ApplicationFactory(name="web")
    BindingFactory(
        application=app,
        cluster=ClusterFactory(name="prod-east"),
        namespace="shop",
        deployment_name="web-frontend",
    )
    return app


@pytest.fixture
def approved(alice, bob, web, api_app):
    """alice's ticket for web and api, approved by bob: two live authorizations in Redis."""
    return TicketFactory(applicant=alice, applications=[web, api_app], approved_by=bob)


def entry_of(ticket: Ticket, name: str) -> TicketEntry:
    return TicketEntry.objects.get(ticket=ticket, name=name)


def live(name: str, username: str = "alice"):
    return grants.live_grant(kind=REDEPLOY_GRANTS, username=username, application_name=name)


def revoke_url(entry: TicketEntry) -> str:
    return reverse(
        "tickets:revoke", kwargs={"ticket_no": entry.ticket.ticket_no, "entry_id": entry.pk}
    )


# --- the service -------------------------------------------------------------------------------


def test_revoke_deletes_the_key_at_once_marks_the_entry_and_audits(approved, carol, redis_client):
    web = entry_of(approved, "web")
    assert live("web") is not None

    revoked = revocations.revoke_authorization(entry=web, actor=carol, reason="Wrong release")

    assert revoked.state == TicketEntry.State.REVOKED
    assert entry_of(approved, "web").state == TicketEntry.State.REVOKED
    key = REDEPLOY_GRANTS.key(username="alice", application_name="web")
    assert redis_client.exists(key) == 0
    assert live("api") is not None  # the ticket's other authorization stays
    event = AuditEvent.objects.get(action=Action.AUTHORIZATION_REVOKED)
    assert (event.actor_username, event.ticket_no, event.application_name, event.message) == (
        "carol",
        approved.ticket_no,
        "web",
        "Wrong release",
    )
    approved.refresh_from_db()
    assert approved.state == Ticket.State.APPROVED  # api is still authorized


def test_the_last_revocation_completes_the_ticket_unsuccessfully(approved, bob):
    for name in ("web", "api"):
        revocations.revoke_authorization(entry=entry_of(approved, name), actor=bob, reason="Stop")
    approved.refresh_from_db()
    assert approved.state == Ticket.State.COMPLETED
    assert approved.success is False
    assert approved.state_changes.last().to_state == Ticket.State.COMPLETED
    assert AuditEvent.objects.filter(action=Action.TICKET_COMPLETED).count() == 1


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_reason_is_required(approved, bob, reason):
    with pytest.raises(ValidationFailed, match=r"Give a reason for the revocation\."):
        revocations.revoke_authorization(entry=entry_of(approved, "web"), actor=bob, reason=reason)
    assert entry_of(approved, "web").state == TicketEntry.State.AUTHORIZED
    assert live("web") is not None
    assert not AuditEvent.objects.filter(action=Action.AUTHORIZATION_REVOKED).exists()


def test_requesters_and_others_may_not_revoke(approved, alice):
    outsider = UserFactory(username="dave")
    other_groups_member = UserFactory(username="erin", groups=["Release managers"])
    staff_without_permission = UserFactory(username="sam", is_staff=True)
    for user in (alice, outsider, other_groups_member, staff_without_permission):
        with pytest.raises(PermissionRefused) as refused:
            revocations.revoke_authorization(
                entry=entry_of(approved, "web"), actor=user, reason="x"
            )
        assert refused.value.message == (
            "Only approvers of work order APPLICATION_REDEPLOY or administrators may revoke "
            "its authorizations."
        )
    assert entry_of(approved, "web").state == TicketEntry.State.AUTHORIZED
    assert live("web") is not None
    assert not AuditEvent.objects.filter(action=Action.AUTHORIZATION_REVOKED).exists()


def test_approvers_of_another_work_order_may_not_revoke(approved):
    other = WorkOrderFactory(key="DATABASE_MIGRATION", business_type="DATABASE")
    ApprovalNodeFactory(work_order=other, group=GroupFactory(name="DBAs"))
    dba = UserFactory(username="dba", groups=["DBAs"])
    assert isinstance(revoke_refusal(entry=entry_of(approved, "web"), user=dba), PermissionRefused)


def test_informed_only_members_may_not_revoke(approved, work_order):
    ApprovalNodeFactory(
        work_order=work_order,
        position=9,
        name="Watchers",
        node_type=ApprovalNode.Type.CC_TO,
        group=GroupFactory(name="Watchers"),
    )
    watcher = UserFactory(username="wanda", groups=["Watchers"])
    assert isinstance(
        revoke_refusal(entry=entry_of(approved, "web"), user=watcher), PermissionRefused
    )


def test_administrators_may_revoke(approved):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    staff = UserFactory(username="sam", is_staff=True, permissions=["tickets.change_ticket"])
    revocations.revoke_authorization(entry=entry_of(approved, "web"), actor=admin, reason="Audit")
    revocations.revoke_authorization(entry=entry_of(approved, "api"), actor=staff, reason="Audit")
    assert live("web") is None and live("api") is None


def test_only_an_authorized_entry_can_be_revoked(approved, bob, alice, web):
    revocations.revoke_authorization(entry=entry_of(approved, "web"), actor=bob, reason="once")
    with pytest.raises(InvalidTransition, match=r"web on ticket \d+ is REVOKED"):
        revocations.revoke_authorization(entry=entry_of(approved, "web"), actor=bob, reason="twice")
    pending = TicketFactory(applicant=alice, applications=[web], submitted=True)
    with pytest.raises(InvalidTransition, match="is DRAFT; only an authorized entry"):
        revocations.revoke_authorization(entry=entry_of(pending, "web"), actor=bob, reason="early")
    assert AuditEvent.objects.filter(action=Action.AUTHORIZATION_REVOKED).count() == 1


def test_an_authorization_in_use_by_an_operation_cannot_be_revoked(approved, alice, bob):
    approved.entries.filter(name="web").update(state=TicketEntry.State.IN_USE)
    with pytest.raises(InvalidTransition, match="An operation on web is running"):
        revocations.revoke_authorization(entry=entry_of(approved, "web"), actor=bob, reason="stop")
    assert entry_of(approved, "web").state == TicketEntry.State.IN_USE


def test_a_newer_tickets_authorization_is_left_alone(approved, alice, carol, web):
    newer = TicketFactory(applicant=alice, applications=[web], approved_by=carol)
    assert live("web").ticket_id == newer.pk

    revocations.revoke_authorization(entry=entry_of(approved, "web"), actor=carol, reason="old")

    assert entry_of(approved, "web").state == TicketEntry.State.REVOKED
    assert live("web").ticket_id == newer.pk


def test_redis_down_changes_nothing(approved, bob, unreachable_redis):
    with pytest.raises(ServiceUnavailable):
        revocations.revoke_authorization(entry=entry_of(approved, "web"), actor=bob, reason="x")
    assert entry_of(approved, "web").state == TicketEntry.State.AUTHORIZED
    assert not AuditEvent.objects.filter(action=Action.AUTHORIZATION_REVOKED).exists()


def test_revocable_entry_ids_for_the_ticket_page(approved, alice, bob):
    ticket = selectors.ticket_by_no(ticket_no=approved.ticket_no)
    both = {entry_of(approved, "web").pk, entry_of(approved, "api").pk}
    assert selectors.revocable_entry_ids(ticket=ticket, user=bob) == both
    assert selectors.revocable_entry_ids(ticket=ticket, user=alice) == set()
    revocations.revoke_authorization(entry=entry_of(approved, "web"), actor=bob, reason="x")
    ticket = selectors.ticket_by_no(ticket_no=approved.ticket_no)
    assert selectors.revocable_entry_ids(ticket=ticket, user=bob) == {entry_of(approved, "api").pk}


# --- the page ----------------------------------------------------------------------------------


def test_the_page_asks_for_a_reason_and_names_what_it_revokes(client, approved, carol):
    client.force_login(carol)  # an approver of the work order who did not vote on it
    response = client.get(revoke_url(entry_of(approved, "web")))
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("alice", "web", approved.ticket_no, "prod-east", "shop", "web-frontend"):
        assert text in html
    assert 'name="reason"' in html and "csrfmiddlewaretoken" in html


def test_revoking_from_the_page(client, approved, bob):
    client.force_login(bob)
    response = client.post(revoke_url(entry_of(approved, "web")), {"reason": "Bad build"})
    assert response.status_code == 302
    assert response.url == reverse("tickets:detail", kwargs={"ticket_no": approved.ticket_no})
    assert entry_of(approved, "web").state == TicketEntry.State.REVOKED
    assert live("web") is None
    response = client.get(response.url)
    assert [str(m) for m in response.context["messages"]] == [
        "The authorization of alice for web was revoked."
    ]


def test_the_page_refuses_a_blank_reason(client, approved, bob):
    client.force_login(bob)
    response = client.post(revoke_url(entry_of(approved, "web")), {"reason": "  "})
    assert response.status_code == 200
    assert "Give a reason for the revocation." in response.content.decode()
    assert entry_of(approved, "web").state == TicketEntry.State.AUTHORIZED


def test_the_page_refuses_the_applicant_and_hides_the_ticket_from_strangers(
    client, approved, alice
):
    url = revoke_url(entry_of(approved, "web"))
    client.force_login(alice)
    assert client.get(url).status_code == 403
    assert client.post(url, {"reason": "mine"}).status_code == 403
    client.force_login(UserFactory(username="dave"))
    response = client.post(url, {"reason": "x"})
    assert response.status_code == 404
    assert f"Ticket {approved.ticket_no} does not exist." in response.content.decode()
    assert entry_of(approved, "web").state == TicketEntry.State.AUTHORIZED


def test_the_page_refuses_a_settled_entry_and_an_unknown_one(client, approved, bob):
    client.force_login(bob)
    web = entry_of(approved, "web")
    revocations.revoke_authorization(entry=web, actor=bob, reason="once")
    response = client.get(revoke_url(web))
    assert response.status_code == 409
    assert "only an authorized entry can be revoked" in response.content.decode()
    unknown = reverse(
        "tickets:revoke", kwargs={"ticket_no": approved.ticket_no, "entry_id": 999999}
    )
    assert client.get(unknown).status_code == 404


def test_the_page_needs_a_login(client, approved):
    url = revoke_url(entry_of(approved, "web"))
    response = client.post(url, {"reason": "x"})
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
