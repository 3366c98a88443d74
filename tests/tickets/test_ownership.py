"""Application ownership: who may request and who approves, read when it is used, on every entry
point (services, pages, API, admin, signed links)."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from cratos.exceptions import PermissionRefused
from cratos.teams.models import Team
from tests.factories import ApplicationFactory, TicketFactory, UserFactory, approval_chain
from tests.support import client_for
from tickets import selectors, services
from tickets.models import Approval, ApprovalNode, Ticket
from tickets.notice_links import decision_link_url
from tickets.rules import decision_refusal

pytestmark = pytest.mark.django_db

Type = ApprovalNode.Type
State = Ticket.State
TICKETS = "/api/v1/tickets/"


@pytest.fixture
def shop(db):
    return Team.objects.create(name="shop")


@pytest.fixture
def payments(db):
    return Team.objects.create(name="payments")


@pytest.fixture
def web(shop):
    application = ApplicationFactory(name="web")
    application.owner_teams.add(shop)
    return application


@pytest.fixture
def checkout(payments):
    application = ApplicationFactory(name="checkout")
    application.owner_teams.add(payments)
    return application


@pytest.fixture
def owners_chain(work_order):
    """The redeploy work order approved by each application's owners (group Approvers)."""
    (node,) = approval_chain(work_order, (Type.APPLICATION_OWNER, "Owners", "Approvers"))
    return node


@pytest.fixture
def alice(work_order, shop, payments):
    """A requester in both teams."""
    user = UserFactory(username="alice", groups=["Requesters"])
    shop.members.add(user)
    payments.members.add(user)
    return user


@pytest.fixture
def bob(work_order, shop):
    """An approver of team shop."""
    user = UserFactory(username="bob", groups=["Approvers"])
    shop.members.add(user)
    return user


@pytest.fixture
def dave(work_order, payments):
    """An approver of team payments."""
    user = UserFactory(username="dave", groups=["Approvers"])
    payments.members.add(user)
    return user


@pytest.fixture
def erin(work_order, payments):
    """A requester of team payments only."""
    user = UserFactory(username="erin", groups=["Requesters"])
    payments.members.add(user)
    return user


def make_admin_approver(user):
    """Staff with the Approvers role's ticket rights, as cratos.roles grants them."""
    user.is_staff = True
    user.save()
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="tickets", codename__in=["view_ticket", "change_ticket"]
        )
    )


def refusals(action="ticket.refused"):
    return list(AuditEvent.objects.filter(action=action).values_list("actor_username", "message"))


# -- who may request -------------------------------------------------------------------------


def test_a_requester_of_another_team_is_refused_and_audited(erin, web, checkout):
    with pytest.raises(PermissionRefused) as refused:
        TicketFactory(applicant=erin, applications=[checkout, web])

    message = (
        "You may not request web (owned by shop): only members of an owner team may. "
        "Ask one of them, or an administrator to add you to the team."
    )
    assert refused.value.message == message
    assert refusals() == [("erin", message)]
    assert not Ticket.objects.exists()
    assert TicketFactory(applicant=erin, applications=[checkout]).state == State.NEW


def test_an_opened_or_unowned_application_is_open_to_every_requester(erin, web, settings):
    unowned = ApplicationFactory(name="unowned")
    assert TicketFactory(applicant=erin, applications=[unowned]).entries.count() == 1
    web.open_to_requesters = True
    web.save()
    assert TicketFactory(applicant=erin, applications=[web]).entries.count() == 1
    web.open_to_requesters = False
    web.save()
    settings.APPLICATIONS_OPEN_TO_ALL_REQUESTERS = True
    assert TicketFactory(applicant=erin, applications=[web]).entries.count() == 1


def test_the_form_offers_only_what_the_user_may_request(client, erin, web, checkout):
    client.force_login(erin)

    page = client.get(reverse("tickets:create")).content.decode()
    assert 'value="checkout"' in page
    assert 'value="web"' not in page

    response = client.post(
        reverse("tickets:create"), {"applications": ["web"], "reason": "Try", "action": "draft"}
    )
    assert response.status_code == 200
    assert "You may not request web (owned by shop)" in response.content.decode()
    assert [user for user, _ in refusals()] == ["erin"]
    assert not Ticket.objects.exists()


def test_adding_an_entry_of_another_team_is_refused_on_the_page(client, erin, web, checkout):
    ticket = TicketFactory(applicant=erin, applications=[checkout])
    client.force_login(erin)

    client.post(reverse("tickets:entries-add", args=[ticket.ticket_no]), {"applications": ["web"]})

    assert list(ticket.entries.values_list("name", flat=True)) == ["checkout"]
    assert refusals()[0][0] == "erin"


def test_the_api_refuses_an_application_of_another_team(erin, web):
    response = client_for(erin).post(
        TICKETS,
        {"workOrderKey": "APPLICATION_REDEPLOY", "applications": ["web"], "reason": "Try"},
        format="json",
    )

    assert response.status_code == 403
    assert "You may not request web (owned by shop)" in response.json()["message"]
    assert len(refusals()) == 1


def test_a_requester_who_left_the_team_can_no_longer_submit(erin, checkout, payments):
    draft = TicketFactory(applicant=erin, applications=[checkout])
    payments.members.remove(erin)

    with pytest.raises(PermissionRefused, match="You may not request checkout"):
        services.submit_ticket(ticket=draft, actor=erin)

    draft.refresh_from_db()
    assert draft.state == State.NEW
    assert len(refusals()) == 1


# -- who approves: APPLICATION_OWNER -----------------------------------------------------------


def test_an_approver_of_another_team_is_refused(owners_chain, alice, bob, dave, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)

    with pytest.raises(PermissionRefused) as refused:
        services.approve_ticket(ticket=ticket, approver=dave)

    assert refused.value.message == (
        "Only members of shop (owners of web) may decide on node Owners now."
    )
    with pytest.raises(PermissionRefused):
        services.reject_ticket(ticket=ticket, approver=dave, reason="No")
    assert services.approve_ticket(ticket=ticket, approver=bob).state == State.APPROVED


def test_a_ticket_naming_two_teams_waits_for_both(owners_chain, alice, bob, dave, web, checkout):
    ticket = TicketFactory(applicant=alice, applications=[web, checkout], submitted=True)
    assert list(selectors.tickets_awaiting_decision(user=bob)) == [ticket]
    assert list(selectors.tickets_awaiting_decision(user=dave)) == [ticket]

    ticket = services.approve_ticket(ticket=ticket, approver=bob)

    assert (ticket.state, ticket.current_node) == (State.IN_APPROVAL, owners_chain)
    assert list(selectors.tickets_awaiting_decision(user=bob)) == []
    assert list(selectors.tickets_awaiting_decision(user=dave)) == [ticket]
    ticket = services.approve_ticket(ticket=ticket, approver=dave)
    assert ticket.state == State.APPROVED
    decided = Approval.objects.filter(ticket=ticket).values_list("approver__username", "team__name")
    assert sorted(decided) == [("bob", "shop"), ("dave", "payments")]
    assert AuditEvent.objects.filter(
        action="ticket.approved", message="Owners (for shop): approved"
    ).exists()


def test_one_owner_team_rejecting_rejects_the_ticket(owners_chain, alice, bob, dave, web, checkout):
    ticket = TicketFactory(applicant=alice, applications=[web, checkout], submitted=True)
    services.approve_ticket(ticket=ticket, approver=bob)

    ticket = services.reject_ticket(ticket=ticket, approver=dave, reason="Not now")

    assert ticket.state == State.REJECTED


def test_a_member_of_both_teams_approves_for_both(
    owners_chain, alice, bob, web, checkout, payments
):
    payments.members.add(bob)
    ticket = TicketFactory(applicant=alice, applications=[web, checkout], submitted=True)

    assert services.approve_ticket(ticket=ticket, approver=bob).state == State.APPROVED
    assert Approval.objects.filter(ticket=ticket, approver=bob).count() == 2


def test_self_approval_stays_impossible_for_an_owner(owners_chain, alice, web):
    alice.groups.add(Group.objects.get(name="Approvers"))
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)

    refusal = decision_refusal(ticket=ticket, user=alice)

    assert refusal.message == "You cannot decide on your own ticket."


def test_an_unowned_application_is_decided_by_any_candidate(owners_chain, alice, dave):
    ticket = TicketFactory(
        applicant=alice, applications=[ApplicationFactory(name="unowned")], submitted=True
    )
    assert services.approve_ticket(ticket=ticket, approver=dave).state == State.APPROVED


def test_an_approver_who_left_the_team_can_no_longer_decide(owners_chain, alice, bob, web, shop):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    shop.members.remove(bob)

    assert list(selectors.tickets_awaiting_decision(user=bob)) == []
    with pytest.raises(PermissionRefused, match="Only members of shop"):
        services.approve_ticket(ticket=ticket, approver=bob)


def test_the_queue_and_its_count_show_only_what_the_approver_decides(
    client, owners_chain, alice, bob, dave, web, checkout
):
    mine = TicketFactory(applicant=alice, applications=[web], submitted=True)
    TicketFactory(applicant=alice, applications=[checkout], submitted=True)
    client.force_login(bob)

    page = client.get(reverse("tickets:approvals")).content.decode()

    assert [item.ticket for item in selectors.approval_queue(user=bob).items] == [mine]
    assert page.count("data-approvals-waiting") == 1
    assert 'title="Tickets awaiting your decision">1</span>' in page


def test_the_admin_lists_only_what_the_approver_decides_reviewers_see_all(
    client, owners_chain, alice, bob, web, checkout
):
    mine = TicketFactory(applicant=alice, applications=[web], submitted=True)
    other = TicketFactory(applicant=alice, applications=[checkout], submitted=True)
    make_admin_approver(bob)
    reviewer = UserFactory(username="rita", groups=["Reviewers"])

    assert list(selectors.tickets_in_admin(user=bob)) == [mine]
    assert set(selectors.tickets_in_admin(user=reviewer)) == {mine, other}
    client.force_login(bob)
    changelist = reverse("admin:tickets_ticket_changelist")
    assert list(client.get(changelist).context["cl"].result_list) == [mine]
    response = client.post(
        changelist,
        {
            "action": "approve_selected",
            ACTION_CHECKBOX_NAME: [mine.pk, other.pk],
            "index": 0,
            "post": "yes",
        },
        follow=True,
    )
    assert response.status_code == 200
    mine.refresh_from_db()
    other.refresh_from_db()
    assert (mine.state, other.state) == (State.APPROVED, State.IN_APPROVAL)


# -- authority checked when it is used ----------------------------------------------------------


@pytest.fixture
def picked_chain(work_order):
    """One USER_SPECIFIED node of the Approvers: the applicant picks bob."""
    (node,) = approval_chain(work_order, (Type.USER_SPECIFIED, "Lead", "Approvers"))
    return node


@pytest.fixture
def picked(picked_chain, alice, bob, web):
    """alice's ticket waiting for bob, whom she picked; bob then loses the Approvers role."""
    ticket = TicketFactory(
        applicant=alice, applications=[web], submitted=True, approvers={"Lead": "bob"}
    )
    assert decision_refusal(ticket=ticket, user=bob) is None
    bob.groups.remove(Group.objects.get(name="Approvers"))
    return ticket


REMOVED = "Only members of Approvers may decide on node Lead."


def assert_still_waiting(ticket):
    ticket.refresh_from_db()
    assert ticket.state == State.IN_APPROVAL
    assert not ticket.approvals.exists()


def test_a_picked_approver_removed_from_the_role_is_refused_by_the_service(picked, bob):
    with pytest.raises(PermissionRefused, match=REMOVED):
        services.approve_ticket(ticket=picked, approver=bob)
    assert list(selectors.tickets_awaiting_decision(user=bob)) == []
    assert_still_waiting(picked)


def test_a_picked_approver_removed_from_the_role_is_refused_on_the_page(client, picked, bob):
    client.force_login(bob)
    vote = f"{picked.ticket_no}:{picked.current_node_id}"

    response = client.post(
        reverse("tickets:approval-confirm"),
        {"decision": "approve", "vote": [vote], "confirmed": "yes"},
        follow=True,
    )

    assert f"{picked.ticket_no}: {REMOVED}" in [str(m) for m in response.context["messages"]]
    assert_still_waiting(picked)


def test_a_picked_approver_removed_from_the_role_is_refused_by_the_api(picked, bob):
    response = client_for(bob).post(f"{TICKETS}{picked.ticket_no}/approve/", {}, format="json")

    assert (response.status_code, response.json()["message"]) == (403, REMOVED)
    assert_still_waiting(picked)


def test_a_picked_approver_removed_from_the_role_is_refused_in_the_admin(client, picked, bob):
    make_admin_approver(bob)
    client.force_login(bob)

    response = client.post(
        reverse("admin:tickets_ticket_approve", args=[picked.pk]), {"post": "yes"}, follow=True
    )

    assert f"{picked.ticket_no}: {REMOVED}" in [str(m) for m in response.context["messages"]]
    assert_still_waiting(picked)
    listing = client.get(reverse("admin:tickets_ticket_changelist"))
    assert list(listing.context["cl"].result_list) == []  # no longer listed for bob


def test_a_signed_link_sent_earlier_no_longer_decides(client, picked, bob, settings):
    settings.SITE_URL = "https://cratos.example"
    url = decision_link_url(
        ticket=picked, node=picked.current_node, user=bob, decision="APPROVE", nonce="n1"
    ).removeprefix(settings.SITE_URL)
    client.force_login(bob)

    response = client.post(url, {"text": ""})

    assert response.status_code == 403
    assert REMOVED in response.content.decode()
    assert_still_waiting(picked)


def test_a_deactivated_approver_cannot_decide_nor_use_an_api_token(alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    token = Token.objects.create(user=bob)
    bob.is_active = False
    bob.save()

    assert decision_refusal(ticket=ticket, user=bob).message == (
        "Your account is deactivated; it can no longer decide."
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.post(f"{TICKETS}{ticket.ticket_no}/approve/", {}, format="json").status_code == 401
    assert_still_waiting(ticket)


# -- notices -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("notices")
def test_each_owner_team_is_asked_and_a_partial_approval_says_what_still_waits(
    owners_chain, alice, bob, dave, web, checkout, django_capture_on_commit_callbacks
):
    UserFactory(username="carol", groups=["Approvers"])  # an approver of no owner team
    with django_capture_on_commit_callbacks(execute=True):
        ticket = TicketFactory(applicant=alice, applications=[web, checkout], submitted=True)
    assert sorted(m.to[0] for m in mail.outbox) == ["bob@example.com", "dave@example.com"]
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.approve_ticket(ticket=ticket, approver=bob)

    [notice] = mail.outbox
    assert notice.to == ["alice@example.com"]
    assert "bob approved step Owners of ticket" in notice.body
    assert "it still waits for the other owner teams." in notice.body


def test_the_queue_agrees_with_the_rule_at_owner_and_picked_nodes(
    work_order, alice, bob, dave, erin, web, checkout
):
    approval_chain(
        work_order,
        (Type.APPLICATION_OWNER, "Owners", "Approvers"),
        (Type.USER_SPECIFIED, "Lead", "Approvers"),
    )
    carol = UserFactory(username="carol", groups=["Approvers"])
    unowned = ApplicationFactory(name="unowned")

    def ticket(applications, *approvers):
        t = TicketFactory(
            applicant=alice, applications=applications, approvers={"Lead": "carol"}, submitted=True
        )
        for approver in approvers:
            services.approve_ticket(ticket=t, approver=approver)
        return t

    tickets = [
        ticket([web]),
        ticket([checkout]),
        ticket([web, checkout]),
        ticket([web, checkout], bob),
        ticket([unowned]),
        ticket([web, unowned], bob),  # at Lead: carol was picked
    ]
    carol_quits = ticket([checkout], dave)  # at Lead; carol then leaves the role
    tickets.append(carol_quits)
    users = [alice, bob, dave, erin, carol]
    expected = {
        user.username: {
            t.pk
            for t in Ticket.objects.filter(pk__in=[t.pk for t in tickets])
            if decision_refusal(ticket=t, user=user) is None
        }
        for user in users
    }
    listed = {
        user.username: {t.pk for t in selectors.tickets_awaiting_decision(user=user)}
        for user in users
    }
    assert listed == expected
    # bob: web, both, unowned; dave: checkout, both twice, unowned; carol (picked for Lead, so
    # never at Owners): the two at Lead.
    assert sum(len(pks) for pks in expected.values()) == 9

    carol.groups.clear()
    assert carol_quits not in selectors.tickets_awaiting_decision(user=carol)
    assert decision_refusal(ticket=carol_quits, user=carol) is not None


def test_the_ticket_page_and_the_api_name_the_team_each_approval_was_for(
    client, owners_chain, alice, bob, web, checkout
):
    ticket = TicketFactory(applicant=alice, applications=[web, checkout], submitted=True)
    services.approve_ticket(ticket=ticket, approver=bob)
    client.force_login(alice)

    page = client.get(reverse("tickets:detail", args=[ticket.ticket_no])).content.decode()
    body = client_for(alice).get(f"{TICKETS}{ticket.ticket_no}/").json()

    assert "<small data-owner-team>(shop)</small>" in page
    assert [(a["approver"], a["team"]) for a in body["approvals"]] == [("bob", "shop")]
