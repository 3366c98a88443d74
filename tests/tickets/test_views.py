"""The requester's pages: list, new ticket, ticket page and its actions, authorizations."""

import re
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from tests.factories import (
    ApplicationFactory,
    RedeployOperationFactory,
    RedeployTargetFactory,
    TicketFactory,
    UserFactory,
)
from tests.support import flash, page, shows
from tickets import services
from tickets.models import Ticket, TicketNodeApprover, WorkOrder
from tickets.views import format_time_left

pytestmark = pytest.mark.django_db


def redeploy_permission():
    return Permission.objects.get(
        content_type__app_label="redeploy", codename="redeploy_application"
    )


REDEPLOY = "APPLICATION_REDEPLOY"


@pytest.fixture
def web():
    return ApplicationFactory(
        name="web", tags=[{"key": "team", "value": "shop"}, {"key": "env", "value": "prod"}]
    )


@pytest.fixture
def api_app():
    return ApplicationFactory(name="api", tags=[{"key": "team", "value": "core"}])


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


def detail_url(ticket) -> str:
    return reverse("tickets:detail", kwargs={"ticket_no": ticket.ticket_no})


def action_url(name: str, ticket) -> str:
    return reverse(f"tickets:{name}", kwargs={"ticket_no": ticket.ticket_no})


# --- login, layout ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/tickets/", "/tickets/new/", "/tickets/20250101000001/", "/authorizations/"]
)
def test_anonymous_is_sent_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next={path}"


@pytest.mark.parametrize("name", ["submit", "cancel", "entries-add", "entry-remove"])
def test_anonymous_post_is_sent_to_login(client, alice, web, name):
    ticket = TicketFactory(applicant=alice, applications=[web])
    response = client.post(action_url(name, ticket), {"entry": "web"})
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.NEW


def test_login_page_signs_in_and_lands_on_my_tickets(client, alice):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert 'name="username"' in page(response) and 'name="password"' in page(response)
    assert "vendor/pico/pico.min.css" in page(response)

    response = client.post(
        reverse("login"), {"username": "alice", "password": "pw-for-tests-123"}, follow=True
    )
    # The start page: a requester's is their tickets.
    assert response.redirect_chain[-1][0] == reverse("tickets:list")
    assert response.context["user"] == alice


def test_login_refusal_is_shown_next_to_the_form(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert 'class="alert alert-error"' in page(response)


def test_layout_has_navigation_logout_form_and_language_switcher(as_alice):
    html = page(as_alice.get(reverse("tickets:list")))
    for url in (
        reverse("tickets:list"),
        reverse("tickets:create"),
        reverse("tickets:authorizations"),
    ):
        assert f'href="{url}"' in html
    assert re.search(rf'<form method="post" action="{reverse("logout")}"', html)
    assert f'action="{reverse("set_language")}"' in html
    assert 'value="zh-hans"' in html
    assert "alice" in html
    # Approvals live in the admin, for staff only.
    assert f'href="{reverse("admin:index")}"' not in html


def test_staff_see_the_approvals_link(client, work_order):
    client.force_login(UserFactory(username="sam", is_staff=True))
    assert f'href="{reverse("admin:index")}"' in page(client.get(reverse("tickets:list")))


def test_logout_is_a_post(as_alice):
    response = as_alice.post(reverse("logout"))
    assert response.status_code == 302
    assert as_alice.get(reverse("tickets:list")).status_code == 302


def test_language_switch_posts_to_set_language(as_alice):
    response = as_alice.post(reverse("set_language"), {"language": "zh-hans", "next": "/tickets/"})
    assert response.status_code == 302
    assert response.url == "/tickets/"


# --- my tickets --------------------------------------------------------------------------------


def test_my_tickets_lists_mine_only_with_state_badges(as_alice, alice, bob, web, api_app):
    draft = TicketFactory(applicant=alice, applications=[web, api_app])
    submitted = TicketFactory(applicant=alice, applications=[web], submitted=True)
    theirs = TicketFactory(applicant=UserFactory(username="carol"), applications=[web])

    for path in ("/tickets/",):
        response = as_alice.get(path)
        assert response.status_code == 200
        html = page(response)
        assert f'href="{detail_url(draft)}"' in html
        assert f'href="{detail_url(submitted)}"' in html
        assert theirs.ticket_no not in html
        assert "web, api" in html or "api, web" in html
        assert 'class="badge badge-new"' in html
        assert 'class="badge badge-in_approval"' in html
        assert "Application redeploy" in html


def test_my_tickets_empty_state_calls_to_action(as_alice):
    response = as_alice.get(reverse("tickets:list"))
    assert shows(response, "No tickets yet")
    assert f'href="{reverse("tickets:create")}" role="button"' in page(response)
    assert "<table" not in page(response)


def test_my_tickets_query_count_does_not_grow_with_tickets(as_alice, alice, web, api_app):
    TicketFactory(applicant=alice, applications=[web])
    with CaptureQueriesContext(connection) as one:
        as_alice.get(reverse("tickets:list"))
    for _ in range(4):
        TicketFactory(applicant=alice, applications=[web, api_app], submitted=True)
    with CaptureQueriesContext(connection) as five:
        as_alice.get(reverse("tickets:list"))
    assert len(five) == len(one)


# --- new ticket --------------------------------------------------------------------------------


def test_new_ticket_form_lists_applications_with_tags(as_alice, web, api_app):
    response = as_alice.get(reverse("tickets:create"))
    assert response.status_code == 200
    html = page(response)
    assert 'value="web"' in html and 'value="api"' in html
    # Tags as chips.
    assert '<span class="chip">team:shop</span><span class="chip">env:prod</span>' in html
    assert 'name="action" value="draft"' in html and 'name="action" value="submit"' in html


def test_save_draft_creates_a_new_ticket(as_alice, alice, web, api_app):
    response = as_alice.post(
        reverse("tickets:create"),
        {"applications": ["web", "api"], "reason": "New config", "action": "draft"},
        follow=True,
    )
    ticket = Ticket.objects.get(applicant=alice)
    assert response.redirect_chain[-1][0] == detail_url(ticket)
    assert ticket.state == Ticket.State.NEW
    assert ticket.reason == "New config"
    assert sorted(ticket.entries.values_list("name", flat=True)) == ["api", "web"]
    assert flash(response) == [f"Ticket {ticket.ticket_no} was saved as a draft."]


def test_save_and_submit_sends_the_ticket_to_approval(as_alice, alice, web):
    response = as_alice.post(
        reverse("tickets:create"),
        {"applications": ["web"], "reason": "Leak fix", "action": "submit"},
        follow=True,
    )
    ticket = Ticket.objects.get(applicant=alice)
    assert ticket.state == Ticket.State.IN_APPROVAL
    assert flash(response) == [f"Ticket {ticket.ticket_no} was submitted for approval."]


def test_blank_reason_is_refused_and_the_choice_kept(as_alice, web):
    response = as_alice.post(
        reverse("tickets:create"), {"applications": ["web"], "reason": "   ", "action": "submit"}
    )
    assert response.status_code == 200
    assert shows(response, "Give a reason for the redeploy.")
    assert re.search(
        r'<input type="checkbox" name="applications" value="web"[^>]*checked', page(response)
    )
    assert not Ticket.objects.exists()


def test_no_application_chosen_is_refused(as_alice, web):
    response = as_alice.post(reverse("tickets:create"), {"reason": "why", "action": "draft"})
    assert response.status_code == 200
    assert response.context["form"].errors["applications"]
    assert "why</textarea>" in page(response)
    assert not Ticket.objects.exists()


def test_unknown_application_is_refused_not_a_500(as_alice, web):
    response = as_alice.post(
        reverse("tickets:create"), {"applications": ["nope"], "reason": "x", "action": "draft"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["applications"]
    assert not Ticket.objects.exists()


def test_draft_limit_is_shown_next_to_the_form_and_input_kept(as_alice, alice, web):
    for _ in range(3):
        TicketFactory(applicant=alice, applications=[web])
    response = as_alice.post(
        reverse("tickets:create"),
        {"applications": ["web"], "reason": "A fourth one", "action": "draft"},
    )
    assert response.status_code == 200
    assert shows(
        response,
        f"You already have 3 unsubmitted {REDEPLOY} tickets; submit or cancel one first.",
    )
    assert 'id="form-errors"' in page(response)
    assert "A fourth one</textarea>" in page(response)
    assert Ticket.objects.filter(applicant=alice).count() == 3


def test_user_specified_node_offers_group_members_but_the_applicant(as_alice, alice, lead_node):
    alice.groups.add(lead_node.group)
    UserFactory(username="dave", groups=["Leads"])
    UserFactory(username="erin", groups=["Leads"], is_active=False)
    response = as_alice.get(reverse("tickets:create"))
    field = response.context["form"][f"approver_{lead_node.pk}"]
    offered = [choice.data["value"] for choice in field.subwidgets if choice.data["value"]]
    assert [str(value) for value in offered] == ["dave"]
    assert shows(response, "Approver for “Lead”")


def test_submit_without_the_chosen_approver_creates_nothing(as_alice, alice, web, lead_node):
    UserFactory(username="dave", groups=["Leads"])
    response = as_alice.post(
        reverse("tickets:create"),
        {"applications": ["web"], "reason": "Needs a lead", "action": "submit"},
    )
    assert response.status_code == 200
    assert shows(response, "Choose the approver for node Lead.")
    assert "Needs a lead</textarea>" in page(response)
    assert not Ticket.objects.exists()


def test_submit_with_the_chosen_approver(as_alice, alice, web, lead_node):
    dave = UserFactory(username="dave", groups=["Leads"])
    as_alice.post(
        reverse("tickets:create"),
        {
            "applications": ["web"],
            "reason": "Needs a lead",
            "action": "submit",
            f"approver_{lead_node.pk}": "dave",
        },
    )
    ticket = Ticket.objects.get(applicant=alice)
    assert ticket.state == Ticket.State.IN_APPROVAL
    assert TicketNodeApprover.objects.get(ticket=ticket, node=lead_node).user == dave


def test_html_in_reason_and_tags_is_escaped(as_alice, alice):
    ApplicationFactory(name="evil", tags=[{"key": "x", "value": "<b>bold</b>"}])
    as_alice.post(
        reverse("tickets:create"),
        {"applications": ["evil"], "reason": "<script>alert(1)</script>", "action": "draft"},
    )
    ticket = Ticket.objects.get(applicant=alice)
    html = page(as_alice.get(detail_url(ticket)))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html
    assert "x:&lt;b&gt;bold&lt;/b&gt;" in html
    form_html = page(as_alice.get(reverse("tickets:create")))
    assert "<b>bold</b>" not in form_html


# --- ticket page -------------------------------------------------------------------------------


def test_ticket_page_for_the_applicant_of_a_draft(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web], reason="Pick up config")
    response = as_alice.get(detail_url(ticket))
    assert response.status_code == 200
    html = page(response)
    assert '<th scope="col">Application Name</th>' in html
    assert '<th scope="col">Tags</th>' in html
    assert "<td>web</td>" in html and "<td>team:shop,env:prod</td>" in html
    assert 'class="badge badge-new"' in html
    assert "Pick up config" in html
    assert "Application redeploy" in html
    assert f'action="{action_url("submit", ticket)}"' in html
    assert f'action="{action_url("cancel", ticket)}"' in html
    assert f'action="{action_url("entry-remove", ticket)}"' in html
    assert f'action="{action_url("entries-add", ticket)}"' in html
    # The redeploy records table has its place, empty for now.
    assert 'id="redeploys"' in html
    assert shows(response, "No redeploy has been run on this ticket yet.")


def test_ticket_page_names_the_current_node_and_who_may_decide(as_alice, alice, bob, web):
    UserFactory(username="carl", groups=["Approvers"])
    alice.groups.add(bob.groups.get())  # the applicant is never among the deciders
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    response = as_alice.get(detail_url(ticket))
    assert [user.username for user in response.context["deciders"]] == ["bob", "carl"]
    html = page(response)
    assert "Approval" in html and "bob, carl" in html
    # Submitted: entries frozen and no second submit, but it can still be withdrawn.
    assert f'action="{action_url("submit", ticket)}"' not in html
    assert f'action="{action_url("entry-remove", ticket)}"' not in html
    assert f'action="{action_url("cancel", ticket)}"' in html


def test_ticket_page_shows_approvals_and_history(as_alice, alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    from tickets import services

    services.approve_ticket(ticket=ticket, approver=bob, comment="Go ahead")
    html = page(as_alice.get(detail_url(ticket)))
    assert 'class="badge badge-approved"' in html
    assert "Go ahead" in html and "<td>bob</td>" in html
    assert html.count('class="badge badge-in_approval"') >= 1  # NEW → IN_APPROVAL → APPROVED
    assert f'action="{action_url("cancel", ticket)}"' not in html


def test_ticket_page_shows_the_redeploy_records(as_alice, alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    operation = RedeployOperationFactory(requested_by=alice, ticket=ticket)
    RedeployTargetFactory(
        operation=operation, ticket=ticket, cluster_name="prod-a", message="Rollout complete"
    )
    RedeployTargetFactory(
        operation=operation,
        ticket=ticket,
        cluster_name="prod-b",
        failed=True,
        message="Deployment does not exist",
    )
    html = page(as_alice.get(detail_url(ticket)))
    assert 'the Deployment runs in">Instance Name</span></th>' in html  # "Instance": the cluster
    for header in (
        "Namespace",
        "Deployment Name",
        "Redeploy Operation Time",
        "Result",
    ):
        assert f'<th scope="col">{header}</th>' in html
    assert "<td>prod-a</td>" in html and "<td>prod-b</td>" in html
    assert "Rollout complete" in html and "Deployment does not exist" in html
    assert 'class="badge badge-success"' in html and 'class="badge badge-failure"' in html


def test_someone_elses_ticket_is_404(client, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    client.force_login(UserFactory(username="mallory"))
    assert client.get(detail_url(ticket)).status_code == 404


def test_unknown_ticket_is_404(as_alice):
    assert as_alice.get("/tickets/20990101999999/").status_code == 404


@pytest.mark.parametrize(
    "make_viewer",
    [
        lambda: UserFactory(username="sam", is_staff=True),
        lambda: UserFactory(username="rob", groups=["Reviewers"]),
        lambda: UserFactory(username="rita", permissions=["audit.view_auditevent"]),
    ],
    ids=["staff", "reviewers-group", "view_auditevent-perm"],
)
def test_staff_and_reviewers_see_any_ticket_without_applicant_actions(
    client, alice, web, make_viewer
):
    ticket = TicketFactory(applicant=alice, applications=[web])
    client.force_login(make_viewer())
    response = client.get(detail_url(ticket))
    assert response.status_code == 200
    assert f'action="{action_url("submit", ticket)}"' not in page(response)
    assert f'action="{action_url("cancel", ticket)}"' not in page(response)


def test_an_approver_who_may_decide_sees_the_ticket(client, alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    client.force_login(bob)
    assert client.get(detail_url(ticket)).status_code == 200


# --- ticket actions ----------------------------------------------------------------------------


def test_submit_from_the_ticket_page(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    response = as_alice.post(action_url("submit", ticket), follow=True)
    assert response.redirect_chain[-1][0] == detail_url(ticket)
    assert flash(response) == [f"Ticket {ticket.ticket_no} was submitted for approval."]
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.IN_APPROVAL


def test_submit_with_an_approver_picked_on_the_ticket_page(as_alice, alice, web, lead_node):
    dave = UserFactory(username="dave", groups=["Leads"])
    ticket = TicketFactory(applicant=alice, applications=[web])
    as_alice.post(action_url("submit", ticket), {f"approver_{lead_node.pk}": "dave"})
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.IN_APPROVAL
    assert TicketNodeApprover.objects.get(ticket=ticket).user == dave


def test_submit_without_entries_is_refused_with_a_message(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    response = as_alice.post(action_url("entry-remove", ticket), {"entry": "web"}, follow=True)
    assert flash(response) == ["Removed from the ticket: web."]
    assert shows(response, "No application on this ticket yet; add at least one to submit it.")

    response = as_alice.post(action_url("submit", ticket), follow=True)
    assert response.status_code == 200
    assert flash(response) == ["A ticket without entries cannot be submitted."]
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.NEW
    response = as_alice.post(
        action_url("submit", ticket), follow=True, HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert flash(response) == ["没有条目的工单不能提交。"]


def test_submit_refusal_keeps_the_services_words(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    response = as_alice.post(action_url("submit", ticket), follow=True)
    [message] = flash(response)
    assert message.startswith(f"Ticket {ticket.ticket_no} is IN_APPROVAL")


def test_others_cannot_act_on_a_ticket_they_cannot_see(client, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    client.force_login(UserFactory(username="mallory"))
    for name in ("submit", "cancel", "entries-add", "entry-remove"):
        response = client.post(action_url(name, ticket), {"entry": "web", "applications": ["web"]})
        assert response.status_code == 404
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.NEW
    assert ticket.entries.count() == 1


def test_staff_who_see_a_ticket_still_cannot_submit_it(client, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    client.force_login(UserFactory(username="sam", is_staff=True))
    response = client.post(action_url("submit", ticket), follow=True)
    assert flash(response) == [f"Only the applicant may submit ticket {ticket.ticket_no}."]
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.NEW


def test_cancel_a_draft_and_a_submitted_ticket(as_alice, alice, web):
    draft = TicketFactory(applicant=alice, applications=[web])
    submitted = TicketFactory(applicant=alice, applications=[web], submitted=True)
    for ticket in (draft, submitted):
        response = as_alice.post(
            action_url("cancel", ticket), {"reason": "Not needed"}, follow=True
        )
        assert flash(response) == [f"Ticket {ticket.ticket_no} was cancelled."]
        ticket.refresh_from_db()
        assert ticket.state == Ticket.State.CLOSED
        assert ticket.state_changes.last().note == "Not needed"


def test_cancel_an_approved_ticket_is_refused(as_alice, alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    response = as_alice.post(action_url("cancel", ticket), follow=True)
    [message] = flash(response)
    assert message.startswith(f"Ticket {ticket.ticket_no} is APPROVED")
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.APPROVED


def test_add_and_remove_entries_while_new(as_alice, alice, web, api_app):
    ticket = TicketFactory(applicant=alice, applications=[web])
    response = as_alice.get(detail_url(ticket))
    add_choices = [str(c.data["value"]) for c in response.context["add_form"]["applications"]]
    assert add_choices == ["api"]  # what is on the ticket is not offered again

    response = as_alice.post(
        action_url("entries-add", ticket), {"applications": ["api"]}, follow=True
    )
    assert flash(response) == ["Added to the ticket: api."]
    assert sorted(ticket.entries.values_list("name", flat=True)) == ["api", "web"]

    as_alice.post(action_url("entry-remove", ticket), {"entry": "web"})
    assert list(ticket.entries.values_list("name", flat=True)) == ["api"]


def test_removing_an_entry_not_on_the_ticket_is_refused(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    response = as_alice.post(action_url("entry-remove", ticket), {"entry": "ghost"}, follow=True)
    assert flash(response) == [f"ghost is not on ticket {ticket.ticket_no}."]


def test_entries_are_frozen_once_submitted(as_alice, alice, web, api_app):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    response = as_alice.post(
        action_url("entries-add", ticket), {"applications": ["api"]}, follow=True
    )
    [message] = flash(response)
    assert "entries are frozen" in message
    response = as_alice.post(action_url("entry-remove", ticket), {"entry": "web"}, follow=True)
    assert "entries are frozen" in flash(response)[0]
    assert list(ticket.entries.values_list("name", flat=True)) == ["web"]


def test_adding_nothing_is_refused_with_a_message(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    response = as_alice.post(action_url("entries-add", ticket), {}, follow=True)
    assert response.status_code == 200
    assert flash(response) == ["This field is required."]


@pytest.mark.parametrize("name", ["submit", "cancel", "entries-add", "entry-remove"])
def test_actions_accept_post_only(as_alice, alice, web, name):
    ticket = TicketFactory(applicant=alice, applications=[web])
    assert as_alice.get(action_url(name, ticket)).status_code == 405


def test_actions_need_the_csrf_token(alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(action_url("cancel", ticket)).status_code == 403
    assert client.post(reverse("tickets:create"), {"applications": ["web"]}).status_code == 403
    assert Ticket.objects.get(pk=ticket.pk).state == Ticket.State.NEW
    # The page's own forms carry the token.
    assert 'name="csrfmiddlewaretoken"' in page(client.get(detail_url(ticket)))


# --- my authorizations -------------------------------------------------------------------------


def test_authorizations_empty_state(as_alice):
    response = as_alice.get(reverse("tickets:authorizations"))
    assert response.status_code == 200
    assert shows(response, "No live authorization")
    assert f'href="{reverse("tickets:create")}" role="button"' in page(response)


def test_authorizations_list_mine_with_time_left(as_alice, alice, bob, web, api_app):
    alice.user_permissions.add(redeploy_permission())
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    TicketFactory(applicant=UserFactory(username="carol"), applications=[api_app], approved_by=bob)
    response = as_alice.get(reverse("tickets:authorizations"))
    html = page(response)
    assert "<strong>web</strong>" in html
    assert "<strong>api</strong>" not in html
    assert f'href="{detail_url(ticket)}"' in html
    [item] = response.context["authorizations"]
    assert 7190 < item["seconds_left"] <= 7200
    assert f'data-seconds-left="{item["seconds_left"]}"' in html
    assert f">{format_time_left(item['seconds_left'])}</span>" in html
    assert "js/countdown.js" in html
    try:
        redeploy_url = reverse("redeploy:request")
    except NoReverseMatch:
        assert "?application=" not in html  # no redeploy page yet: no dead button
    else:
        assert f'href="{redeploy_url}?application=web"' in html


def test_no_redeploy_button_for_who_may_not_redeploy(as_alice, alice, bob, web):
    TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    html = page(as_alice.get(reverse("tickets:authorizations")))
    assert "<strong>web</strong>" in html
    assert "?application=web" not in html
    assert "You may not redeploy applications." in html


def test_used_authorization_disappears(as_alice, alice, bob, web, redis_client):
    TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    redis_client.delete("APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web")
    assert shows(as_alice.get(reverse("tickets:authorizations")), "No live authorization")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(7199, "1h 59m"), (6720, "1h 52m"), (3600, "1h 0m"), (250, "4m 10s"), (9, "9s"), (-5, "0s")],
)
def test_format_time_left(seconds, text):
    assert format_time_left(seconds) == text


# --- refusals rendered as a page, language -----------------------------------------------------


def test_error_page_shows_the_refusal_escaped(rf, alice):
    from django.template.loader import render_to_string

    from cratos.exceptions import ServiceUnavailable

    request = rf.get("/authorizations/")
    request.user = alice
    html = render_to_string(
        "error.html", {"error": ServiceUnavailable("Redis <down>")}, request=request
    )
    assert '<div class="alert alert-error" role="alert">Redis &lt;down&gt;</div>' in html
    assert f'href="{reverse("tickets:list")}"' in html


def test_pages_follow_the_chosen_language(as_alice):
    as_alice.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    html = page(as_alice.get(reverse("tickets:list")))
    assert '<html lang="zh-hans"' in html
    assert '<option value="zh-hans" selected' in html


def test_seed_table_headers_stay_english_and_are_translated_in_chinese(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    html = page(as_alice.get(detail_url(ticket)))
    assert '<th scope="col">Application Name</th>' in html
    as_alice.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    html = page(as_alice.get(detail_url(ticket)))
    assert '<th scope="col">应用名称</th>' in html
    assert '<th scope="col">标签</th>' in html


def test_seeded_work_order_and_step_names_read_in_the_pages_language(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    html = page(as_alice.get(detail_url(ticket)))
    assert "Application redeploy" in html and "应用重新部署" not in html
    assert "审批" not in html
    as_alice.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    html = page(as_alice.get(detail_url(ticket)))
    assert "<dd>应用重新部署 <small" in html and "Application redeploy" not in html
    assert re.search(r"</strong>\s*审批", html)
    assert "<td >应用重新部署</td>" in page(as_alice.get(reverse("tickets:list")))
    new_ticket = page(as_alice.get(reverse("tickets:create")))
    assert "工单类型 应用重新部署" in new_ticket


def test_a_name_without_its_chinese_wording_reads_in_english(as_alice, alice, web):
    WorkOrder.objects.filter(key=REDEPLOY).update(name_zh_hans="")
    ticket = TicketFactory(applicant=alice, applications=[web])
    as_alice.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    assert "<dd>Application redeploy <small" in page(as_alice.get(detail_url(ticket)))


def test_add_form_says_when_every_application_is_on_the_ticket(as_alice, alice, web):
    ticket = TicketFactory(applicant=alice, applications=[web])
    assert shows(as_alice.get(detail_url(ticket)), "Every application is already on this ticket.")


def test_new_ticket_form_preselects_the_application_from_the_link(client, alice, web, api_app):
    client.force_login(alice)

    response = client.get("/tickets/new/?application=web")

    assert response.status_code == 200
    assert response.context["form"]["applications"].value() == ["web"]


# --- next steps: the approved ticket, landing pages, error pages --------------------------------


def test_approved_ticket_offers_redeploy_with_the_time_left(as_alice, alice, bob, web):
    alice.user_permissions.add(redeploy_permission())
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    response = as_alice.get(detail_url(ticket))
    html = page(response)
    [item] = response.context["authorizations"]
    assert 7190 < item["seconds_left"] <= 7200
    assert "Next step: use your approval" in html
    assert f'href="{reverse("redeploy:request")}?application=web" role="button"' in html
    assert f">{format_time_left(item['seconds_left'])}</span>" in html


def test_approved_ticket_names_the_refusal_instead_of_a_button(as_alice, alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    html = page(as_alice.get(detail_url(ticket)))
    assert '?application=web" role="button"' not in html
    assert "You may not redeploy applications." in html


def test_spent_approval_offers_a_new_ticket_for_the_same_applications(
    as_alice, alice, bob, web, redis_client
):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    redis_client.delete("APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web")
    response = as_alice.get(detail_url(ticket))
    assert response.context["authorizations"] == []
    assert shows(response, "File a new ticket for these applications")
    assert (
        f'href="{reverse("tickets:create")}?work_order=APPLICATION_REDEPLOY&amp;application=web"'
        in page(response)
    )


def test_others_see_no_next_step_on_an_approved_ticket(client, alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    response = client.get(detail_url(ticket))
    assert response.context["authorizations"] == []
    assert not response.context["approvals_spent"]


def start_page(client) -> str:
    """Where '/' (the brand's link, the error pages' start link) leads."""
    return client.get("/", follow=True).redirect_chain[-1][0]


def test_approvers_start_at_their_queue(client, alice, bob, web):
    TicketFactory(applicant=alice, applications=[web], submitted=True)
    client.force_login(bob)
    assert start_page(client) == reverse("tickets:approvals")
    # My tickets stays theirs to open.
    assert client.get(reverse("tickets:list")).status_code == 200


def test_reviewers_start_at_the_audit_log(client, reviewer):
    assert start_page(client) == reverse("audit:events")


def test_requesters_start_at_their_tickets(as_alice):
    assert start_page(as_alice) == reverse("tickets:list")


def test_unknown_page_is_a_404_inside_the_frame(as_alice):
    response = as_alice.get("/no/such/page/")
    assert response.status_code == 404
    html = page(response)
    assert "<title>Page not found · Cratos Redeploy</title>" in html
    assert 'class="site-header"' in html
    assert f'href="{reverse("tickets:home")}"' in html


def test_refusal_pages_have_their_own_titles(as_alice):
    html = page(as_alice.get(reverse("tickets:detail", kwargs={"ticket_no": "nope"})))
    assert "<title>Not found · Cratos Redeploy</title>" in html
    html = page(as_alice.get(reverse("redeploy:request")))
    assert "<title>Not allowed · Cratos Redeploy</title>" in html


# --- a ticket waiting for approval updates itself ------------------------------------------------


def test_a_waiting_ticket_asks_whether_it_changed_and_reloads_when_it_did(
    as_alice, alice, bob, web
):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    response = as_alice.get(detail_url(ticket))
    html = page(response)
    seen = response.context["live_signature"]
    assert f'hx-get="{detail_url(ticket)}?seen={quote(seen)}"' in html
    assert 'hx-trigger="every 5s"' in html and "django_htmx/htmx" in html

    poll = as_alice.get(detail_url(ticket), {"seen": seen}, HTTP_HX_REQUEST="true")
    assert poll.status_code == 204  # nothing new: htmx leaves the page alone
    assert "HX-Request" in poll.headers["Vary"]

    services.approve_ticket(ticket=ticket, approver=bob, comment="")
    poll = as_alice.get(detail_url(ticket), {"seen": seen}, HTTP_HX_REQUEST="true")
    assert poll.headers["HX-Refresh"] == "true"
    html = page(as_alice.get(detail_url(ticket)))
    assert "hx-get" not in html and "django_htmx/htmx" not in html  # decided: no more asking


def test_an_identical_open_ticket_is_named_when_filing_another(as_alice, alice, web, api_app):
    first = TicketFactory(applicant=alice, applications=[web], submitted=True)
    TicketFactory(applicant=alice, applications=[web, api_app])  # not the same applications
    response = as_alice.post(
        reverse("tickets:create"),
        {"applications": ["web"], "reason": "Again", "action": "submit"},
        follow=True,
    )
    [success, warning] = flash(response)
    assert success.endswith("was submitted for approval.")
    assert warning == (
        f"Ticket {first.ticket_no}, still open, names the same applications; "
        "cancel the one you do not need."
    )
