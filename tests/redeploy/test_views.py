"""The redeploy pages: request form (with its confirmation), operation page and its status JSON,
my redeploys, and the ticket page's second table. Real PostgreSQL, Redis and the simulator;
the task runs inline once the request's transaction commits."""

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from cratos.audit.models import AuditEvent
from redeploy.models import RedeployOperation, RedeployTarget
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import (
    ApplicationFactory,
    BindingFactory,
    ClusterFactory,
    RedeployOperationFactory,
    RedeployTargetFactory,
    TicketFactory,
    UserFactory,
)
from tests.redeploy.conftest import use_broker
from tests.support import page, shows
from tickets import grants
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
FORM = {"application": "web", "namespace": "shop", "deployment": "web", "cluster": ""}
XSS = '<script>alert("x")</script>'


def request_url() -> str:
    return reverse("redeploy:request")


def operation_url(operation) -> str:
    return reverse("redeploy:operation", kwargs={"operation_id": operation.pk})


def status_url(operation) -> str:
    return reverse("redeploy:operation-status", kwargs={"operation_id": operation.pk})


def input_value(html: str, name: str) -> str:
    match = re.search(rf'<input [^>]*name="{name}"[^>]*>', html)
    assert match, f"no input {name}"
    value = re.search(r'value="([^"]*)"', match.group(0))
    return value.group(1) if value else ""


def datalist(html: str, list_id: str) -> list[str]:
    match = re.search(rf'<datalist id="{list_id}">(.*?)</datalist>', html, re.S)
    assert match, f"no datalist {list_id}"
    return re.findall(r'<option value="([^"]*)"', match.group(1))


def expire_authorization(redis_client) -> None:
    """The value says it expired (as after the TTL), while Redis still holds it."""
    value = json.loads(redis_client.get(KEY))
    value["expires"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    redis_client.set(KEY, json.dumps(value), keepttl=True)


# -- the form -----------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    response = client.get(request_url())
    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next={request_url()}"


def test_form_needs_the_permission(client, approved_ticket, binding):
    client.force_login(UserFactory(username="mallory"))
    response = client.get(request_url())
    assert response.status_code == 403
    assert shows(response, "You may not redeploy applications.")


def test_form_prefills_from_the_application_and_offers_its_bindings(
    as_alice, approved_ticket, binding
):
    response = as_alice.get(request_url(), {"application": "web"})

    assert response.status_code == 200
    html = page(response)
    assert input_value(html, "application") == "web"
    # One Deployment in one namespace: its names are filled in; the cluster stays "every".
    assert (input_value(html, "namespace"), input_value(html, "deployment")) == ("shop", "web")
    assert input_value(html, "cluster") == ""
    assert datalist(html, "application-choices") == ["web"]
    assert datalist(html, "namespace-choices") == ["shop"]
    assert datalist(html, "deployment-choices") == ["web"]
    assert datalist(html, "cluster-choices") == ["sim"]
    assert f">{approved_ticket.ticket_no}</a>" in html
    bindings = json.loads(
        re.search(r'id="redeploy-bindings"[^>]*>(.*?)</script>', html, re.S).group(1)
    )
    assert bindings == {"web": [{"cluster": "sim", "namespace": "shop", "deployment": "web"}]}
    assert "js/operation.js" in html


def test_form_prefills_every_field_from_the_query(as_alice, approved_ticket, binding):
    query = {"application": "web", "namespace": "other", "deployment": "api", "cluster": "sim"}
    html = page(as_alice.get(request_url(), query))
    assert [input_value(html, name) for name in query] == list(query.values())


def test_form_without_authorization_says_how_to_get_one(as_alice, binding):
    response = as_alice.get(request_url())
    assert response.status_code == 200
    assert shows(response, "No live authorization")
    assert datalist(page(response), "application-choices") == []


def test_post_asks_to_confirm_what_will_be_restarted(as_alice, approved_ticket, binding, sim):
    second = ClusterFactory(name="sim-b", server=sim.url)
    BindingFactory(
        application=binding.application, cluster=second, namespace="shop", deployment_name="web"
    )

    response = as_alice.post(request_url(), FORM)

    assert response.status_code == 200
    html = page(response)
    assert '<dd data-confirm="application">web</dd>' in html
    assert '<dd data-confirm="namespace">shop</dd>' in html
    assert '<dd data-confirm="deployment">web</dd>' in html
    assert '<dd data-confirm="clusters">sim, sim-b</dd>' in html
    assert '<input type="hidden" name="confirmed" value="1">' in html
    assert not RedeployOperation.objects.exists()
    assert sim.requests == []


def test_confirmation_says_who_else_manages_the_deployment_and_where_it_is_paused(
    as_alice, approved_ticket, binding, sim
):
    binding.managed_by = "Argo CD"
    binding.save()
    BindingFactory(
        application=binding.application,
        cluster=ClusterFactory(name="sim-b", server=sim.url),
        namespace="shop",
        deployment_name="web",
        paused=True,
    )

    html = page(as_alice.post(request_url(), FORM))

    assert "In cluster sim this Deployment is managed by Argo CD: a restart changes only" in html
    assert "Paused in sim-b: kubectl refuses to restart a paused Deployment" in html


def test_confirmation_warns_when_no_binding_matches(as_alice, approved_ticket, binding):
    response = as_alice.post(request_url(), FORM | {"deployment": "nope"})
    assert response.status_code == 200
    assert shows(response, "The deployment=nope resource does not exist")
    assert not RedeployOperation.objects.exists()


def test_confirmed_post_redirects_to_the_operation_which_runs(
    as_alice, requester, approved_ticket, binding, sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_alice.post(request_url(), FORM | {"confirmed": "1"})

    operation = RedeployOperation.objects.get()
    assert response.status_code == 302
    assert response.url == operation_url(operation)
    assert (operation.requested_by, operation.application_name, operation.request_ip) == (
        requester,
        "web",
        "127.0.0.1",
    )
    operation.refresh_from_db()
    assert operation.state == RedeployOperation.State.SUCCEEDED
    assert len([r for r in sim.requests if r.method == "PATCH"]) == 1
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, True)


def test_a_named_cluster_is_passed_on(
    as_alice, approved_ticket, binding, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = as_alice.post(request_url(), FORM | {"cluster": "sim", "confirmed": "1"})
    assert response.status_code == 302
    assert RedeployOperation.objects.get().cluster_name == "sim"


def _carols_authorization(approver, application):
    carol = UserFactory(username="carol")
    TicketFactory(applicant=carol, applications=[application], approved_by=approver)


def _another_applications_authorization(requester, approver, application):
    TicketFactory(
        applicant=requester, applications=[ApplicationFactory(name="api")], approved_by=approver
    )


@pytest.mark.parametrize("case", ["none", "expired", "another user's", "another application's"])
@pytest.mark.parametrize("confirmed", ["", "1"])
def test_refused_at_once_without_a_live_authorization(
    as_alice, requester, approver, application, binding, redis_client, case, confirmed
):
    if case == "expired":
        TicketFactory(applicant=requester, applications=[application], approved_by=approver)
        expire_authorization(redis_client)
    elif case == "another user's":
        _carols_authorization(approver, application)
    elif case == "another application's":
        _another_applications_authorization(requester, approver, application)

    response = as_alice.post(request_url(), FORM | {"confirmed": confirmed})

    assert response.status_code == 403
    html = page(response)
    errors = re.search(
        r'<div class="alert alert-error" role="alert" id="form-errors">(.*?)</div>', html, re.S
    )
    assert errors and "<p>Unauthorized access</p>" in errors.group(1)
    # Nothing typed is lost.
    assert [input_value(html, name) for name in FORM] == list(FORM.values())
    assert not RedeployOperation.objects.exists()
    event = AuditEvent.objects.get(action="redeploy.refused")
    assert (event.actor_username, event.message) == ("alice", "Unauthorized access")


def _refusal_reason(response) -> re.Match:
    match = re.search(
        r'<div class="refusal-reason" data-reason="(\w+)">(.*?)</div>', page(response), re.S
    )
    assert match, "the refusal names no reason"
    return match


NEW_TICKET_FOR_WEB = 'href="/tickets/new/?work_order=APPLICATION_REDEPLOY&amp;application=web"'


def test_a_used_authorization_is_named_with_when_and_which_redeploy(
    as_alice, approved_ticket, binding, sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        as_alice.post(request_url(), FORM | {"confirmed": "1"})
    operation = RedeployOperation.objects.get()

    response = as_alice.post(request_url(), FORM | {"confirmed": "1"})

    assert response.status_code == 403
    reason = _refusal_reason(response)
    assert reason.group(1) == "used"
    assert f"ticket {approved_ticket.ticket_no} for web was already used, on " in reason.group(2)
    assert f'href="{operation_url(operation)}"' in reason.group(2)
    assert NEW_TICKET_FOR_WEB in reason.group(2)


def test_an_expired_authorization_is_named_with_its_end(
    as_alice, approved_ticket, binding, redis_client
):
    entry = approved_ticket.entries.get()
    entry.authorization_expires_at = timezone.now() - timedelta(seconds=5)
    entry.save()
    redis_client.delete(KEY)

    reason = _refusal_reason(as_alice.post(request_url(), FORM | {"confirmed": "1"}))

    assert reason.group(1) == "expired"
    assert f"ticket {approved_ticket.ticket_no} for web expired at " in reason.group(2)
    assert NEW_TICKET_FOR_WEB in reason.group(2)


def test_never_asked_for_is_named_with_a_prefilled_new_ticket(as_alice, binding):
    reason = _refusal_reason(as_alice.post(request_url(), FORM | {"confirmed": "1"}))
    assert reason.group(1) == "never"
    assert "You hold no approved ticket for web." in reason.group(2)
    assert NEW_TICKET_FOR_WEB in reason.group(2)


def test_a_pending_ticket_is_named_and_linked(as_alice, requester, application, binding):
    ticket = TicketFactory(applicant=requester, applications=[application], submitted=True)
    reason = _refusal_reason(as_alice.post(request_url(), FORM | {"confirmed": "1"}))
    assert reason.group(1) == "pending"
    assert f'href="/tickets/{ticket.ticket_no}/"' in reason.group(2)


def test_post_without_the_permission_is_refused_and_audited(client, approved_ticket, binding):
    client.force_login(UserFactory(username="mallory"))
    response = client.post(request_url(), FORM | {"confirmed": "1"})
    assert response.status_code == 403
    assert shows(response, "You may not redeploy applications.")
    assert AuditEvent.objects.filter(action="redeploy.refused", actor_username="mallory").exists()
    assert not RedeployOperation.objects.exists()


def test_invalid_post_without_the_permission_is_refused(client):
    client.force_login(UserFactory(username="mallory"))
    response = client.post(request_url(), {"namespace": "Bad_Name"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("namespace", "Shop_1", "Shop_1 is not a valid DNS-1123 label"),
        ("namespace", "a" * 64, "is not a valid DNS-1123 label"),
        ("deployment", "web/../x", "web/../x is not a valid DNS-1123 subdomain"),
        ("deployment", "-web", "-web is not a valid DNS-1123 subdomain"),
    ],
)
def test_dns1123_errors_are_shown_next_to_the_field(
    as_alice, approved_ticket, binding, field, value, error
):
    data = FORM | {field: value, "confirmed": "1"}
    response = as_alice.post(request_url(), data)

    assert response.status_code == 400
    html = page(response)
    after_input = html.split(f'name="{field}"', 1)[1]
    next_field = after_input.split("<label", 1)[0]
    assert re.search(rf'<small class="field-error">[^<]*{re.escape(escape(error))}', next_field)
    assert 'aria-invalid="true"' in re.search(rf'<input [^>]*name="{field}"[^>]*>', html).group(0)
    assert [input_value(html, name) for name in FORM] == [data[name] for name in FORM]
    assert not RedeployOperation.objects.exists()


def test_missing_fields_are_required(as_alice, approved_ticket):
    response = as_alice.post(request_url(), {"application": "web"})
    assert response.status_code == 400
    assert page(response).count('<small class="field-error">This field is required.</small>') == 2
    assert input_value(page(response), "application") == "web"


@pytest.mark.django_db(transaction=True)
def test_broker_down_is_told_next_to_the_form(as_alice, approved_ticket, binding, sim):
    use_broker("redis://127.0.0.1:1/0")
    try:
        response = as_alice.post(request_url(), FORM | {"confirmed": "1"})
    finally:
        use_broker(None)

    assert response.status_code == 503
    assert shows(response, "The task queue is not answering")
    assert [input_value(page(response), name) for name in FORM] == list(FORM.values())
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")
    assert sim.requests == []


def test_typed_html_is_escaped(as_alice, approved_ticket, binding):
    response = as_alice.post(request_url(), FORM | {"application": XSS, "confirmed": "1"})
    assert response.status_code == 403
    assert XSS not in page(response)
    assert escape(XSS) in page(response)


# -- the operation page -------------------------------------------------------------------


def _finished_operation(requester, ticket, **target):
    operation = RedeployOperationFactory(
        requested_by=requester,
        ticket=ticket,
        state=RedeployOperation.State.FAILED,
        message="1 of 2 Deployment(s) failed",
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    RedeployTargetFactory(
        operation=operation,
        ticket=ticket,
        cluster_name="prod-a",
        replicas=3,
        updated_replicas=3,
        available_replicas=3,
        generation=7,
        resource_version="4711",
        restarted_at="2025-01-02T03:04:05Z",
        message="Rollout complete",
    )
    RedeployTargetFactory(operation=operation, ticket=ticket, cluster_name="prod-b", **target)
    return operation


def test_operation_page_shows_the_operation_and_its_targets(as_alice, requester, approved_ticket):
    operation = _finished_operation(
        requester, approved_ticket, failed=True, message="Deployment does not exist"
    )

    response = as_alice.get(operation_url(operation))

    assert response.status_code == 200
    html = page(response)
    assert '<span class="badge badge-failure" data-op-field="state">Failed</span>' in html
    assert shows(response, "1 of 2 Deployment(s) failed")
    assert f'<a href="/tickets/{approved_ticket.ticket_no}/">' in html
    assert '<td data-field="cluster">prod-a</td>' in html
    assert '<td data-field="cluster">prod-b</td>' in html
    assert '<span class="result-message" data-field="message">Rollout complete</span>' in html
    assert (
        '<span class="result-message" data-field="message">Deployment does not exist</span>' in html
    )
    assert '<progress data-field="updatedBar" value="3" max="3"></progress>' in html
    assert '<span data-field="generation">7</span>' in html
    assert '<span data-field="resourceVersion">4711</span>' in html
    assert "2025-01-02T03:04:05Z" in html
    assert 'http-equiv="refresh"' not in html  # finished: nothing to follow
    assert f'data-status-url="{status_url(operation)}"' in html
    assert "js/operation.js" in html


def test_failed_redeploy_says_the_authorization_went_back_and_offers_a_retry(
    as_alice, requester, approved_ticket
):
    operation = RedeployOperationFactory(
        requested_by=requester,
        state=RedeployOperation.State.FAILED,
        message="Deployment shop/web was not found",
        finished_at=timezone.now(),
    )
    response = as_alice.get(operation_url(operation))
    assert response.context["next_step"]["given_back"]
    html = page(response)
    assert "your authorization was given back" in html
    assert re.search(r'href="/redeploy/\?application=web&amp;namespace=[^"]*" role="button"', html)
    assert "Try again" in html


def test_failed_redeploy_without_a_live_authorization_offers_a_new_ticket(as_alice, requester):
    operation = RedeployOperationFactory(
        requested_by=requester, state=RedeployOperation.State.FAILED, finished_at=timezone.now()
    )
    response = as_alice.get(operation_url(operation))
    assert response.context["next_step"] == {"given_back": False, "application_name": "web"}
    assert 'href="/tickets/new/?application=web"' in page(response)


def test_running_operation_refreshes_itself(as_alice, requester):
    operation = RedeployOperationFactory(requested_by=requester)
    response = as_alice.get(operation_url(operation))
    html = page(response)
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html
    # Asked again 0.75 s after each answer: a redeploy's end shows within a second.
    assert 'data-poll-milliseconds="750"' in html
    assert shows(response, "Waiting for a worker to take up the redeploy…")
    assert '<span class="badge badge-queued" data-op-field="state">Queued</span>' in html


def test_messages_are_shown_verbatim_and_escaped(as_alice, requester, approved_ticket):
    operation = _finished_operation(
        requester, approved_ticket, failed=True, message=f"Operation failed err: {XSS}"
    )
    RedeployOperation.objects.filter(pk=operation.pk).update(message=XSS)
    for url in (operation_url(operation), reverse("redeploy:operations")):
        html = page(as_alice.get(url))
        assert XSS not in html
        assert escape(XSS) in html
    html = page(as_alice.get(reverse("tickets:detail", args=[approved_ticket.ticket_no])))
    assert XSS not in html and escape(f"Operation failed err: {XSS}") in html


@pytest.mark.parametrize("who", ["staff", "reviewer"])
def test_staff_and_reviewers_see_any_operation(client, requester, who):
    operation = RedeployOperationFactory(requested_by=requester)
    viewer = UserFactory(
        username="rita",
        is_staff=who == "staff",
        permissions=["audit.view_auditevent"] if who == "reviewer" else [],
    )
    client.force_login(viewer)
    assert client.get(operation_url(operation)).status_code == 200
    assert client.get(status_url(operation)).status_code == 200


def test_someone_elses_operation_is_404(client, requester):
    operation = RedeployOperationFactory(requested_by=requester)
    client.force_login(UserFactory(username="mallory"))
    assert client.get(operation_url(operation)).status_code == 404
    response = client.get(status_url(operation))
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": f"Redeploy {operation.pk} does not exist.",
    }


def test_unknown_operation_is_404(as_alice):
    missing = uuid.uuid4()
    assert as_alice.get(f"/redeploy/operations/{missing}/").status_code == 404
    assert as_alice.get("/redeploy/operations/not-a-uuid/").status_code == 404


def test_status_json_has_the_api_shape(as_alice, requester, approved_ticket):
    operation = _finished_operation(requester, approved_ticket, running=True, message="")

    response = as_alice.get(status_url(operation))

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    data = response.json()
    assert data["id"] == str(operation.pk)
    assert data["url"] == f"http://testserver/api/v1/redeploys/{operation.pk}/"
    assert (data["state"], data["ticketNo"], data["cluster"]) == (
        "FAILED",
        approved_ticket.ticket_no,
        None,
    )
    first, second = data["targets"]
    assert first["progress"] == {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    assert (first["generation"], first["resourceVersion"]) == (7, "4711")
    assert (second["state"], second["success"], second["restartedAt"]) == ("ROLLING", None, None)


def test_the_operation_page_follows_a_real_redeploy(
    as_alice, approved_ticket, binding, sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = as_alice.post(request_url(), FORM | {"confirmed": "1"})
    operation = RedeployOperation.objects.get()
    assert as_alice.get(status_url(operation)).json()["state"] == "QUEUED"

    for callback in callbacks:
        callback()

    data = as_alice.get(status_url(operation)).json()
    assert data["state"] == "SUCCEEDED"
    (target,) = data["targets"]
    assert (target["cluster"], target["state"], target["success"]) == ("sim", "SUCCEEDED", True)
    assert target["progress"] == {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    assert target["restartedAt"] and target["generation"] == 2
    html = page(as_alice.get(response.url))
    assert '<span class="badge badge-success" data-op-field="state">Succeeded</span>' in html
    assert 'http-equiv="refresh"' not in html


# -- my redeploys ---------------------------------------------------------------------------


def test_operation_list_shows_mine_only(as_alice, requester, approved_ticket):
    mine = _finished_operation(requester, approved_ticket)
    theirs = RedeployOperationFactory(
        requested_by=UserFactory(username="carol"), application_name="secret-app"
    )

    response = as_alice.get(reverse("redeploy:operations"))

    assert response.status_code == 200
    html = page(response)
    assert f'href="{operation_url(mine)}"' in html
    assert f'href="{operation_url(theirs)}"' not in html and "secret-app" not in html
    assert '<span class="badge badge-failure">Failed</span>' in html
    assert "every cluster" in html


def test_operation_list_empty_state(as_alice):
    assert shows(as_alice.get(reverse("redeploy:operations")), "No redeploy yet")


# -- the ticket page's second table ---------------------------------------------------------


def test_ticket_page_lists_the_redeploy_records(as_alice, requester, approved_ticket):
    operation = _finished_operation(
        requester, approved_ticket, failed=True, message="Deployment does not exist"
    )

    html = page(as_alice.get(reverse("tickets:detail", args=[approved_ticket.ticket_no])))

    headers = re.search(
        r'<table class="striped redeploys-table">\s*<thead>(.*?)</thead>', html, re.S
    )
    # "Instance Name" has a tooltip: the instance is the cluster.
    assert re.findall(r'<th scope="col">(?:<span title="[^"]*">)?([^<]*)<', headers.group(1)) == [
        "Instance Name",
        "Namespace",
        "Deployment Name",
        "Redeploy Operation Time",
        "Result",
    ]
    assert "<td>prod-a</td>" in html and "<td>prod-b</td>" in html
    assert html.count(f'<a href="{operation_url(operation)}"') == 2
    assert 'class="badge badge-success"' in html and 'class="badge badge-failure"' in html
    assert "Rollout complete" in html and "Deployment does not exist" in html


def test_targets_show_their_rolling_state_on_the_ticket(as_alice, requester, approved_ticket):
    operation = RedeployOperationFactory(requested_by=requester, ticket=approved_ticket)
    RedeployTarget.objects.create(
        operation=operation,
        ticket=approved_ticket,
        cluster_name="sim",
        namespace="shop",
        deployment_name="web",
        state=RedeployTarget.State.PENDING,
    )
    html = page(as_alice.get(reverse("tickets:detail", args=[approved_ticket.ticket_no])))
    assert 'class="badge badge-pending"' in html
    assert f'<a href="{operation_url(operation)}" title="Open the redeploy">not yet</a>' in html
