"""The redeploy JSON API: POST /api/v1/redeploys/ (202), GET one (requester, staff, reviewers),
GET mine. Real PostgreSQL, Redis and the simulator; the task runs inline after commit."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from redeploy.models import RedeployOperation
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import (
    ApplicationFactory,
    BindingFactory,
    RedeployOperationFactory,
    RedeployTargetFactory,
    TicketFactory,
    UserFactory,
)
from tests.redeploy.conftest import use_broker
from tests.support import client_for
from tickets import grants

pytestmark = pytest.mark.django_db

REDEPLOYS = "/api/v1/redeploys/"
KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
BODY = {"applicationName": "web", "namespace": "shop", "deploymentName": "web"}
UNAUTHORIZED = {"error": "unauthorized_access", "message": "Unauthorized access"}


def detail_url(operation_id) -> str:
    return f"{REDEPLOYS}{operation_id}/"


@pytest.fixture
def alice_api(requester) -> APIClient:
    return client_for(requester)


def test_anonymous_is_refused(client, approved_ticket):
    response = APIClient().post(REDEPLOYS, BODY, format="json")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_post_queues_a_redeploy_and_answers_202(
    alice_api, requester, approved_ticket, binding, sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = alice_api.post(REDEPLOYS, BODY | {"cluster": "sim"}, format="json")

    assert response.status_code == 202, response.json()
    operation = RedeployOperation.objects.get()
    url = f"http://testserver{REDEPLOYS}{operation.pk}/"
    assert response.json() == {"id": str(operation.pk), "state": "QUEUED", "url": url}
    assert response["Location"] == url
    assert (operation.requested_by, operation.cluster_name, operation.request_ip) == (
        requester,
        "sim",
        "127.0.0.1",
    )
    assert len(callbacks) == 1  # the task is queued once the operation is committed
    assert sim.requests == []


@pytest.mark.parametrize("named", [None, "", "absent"])
def test_no_cluster_means_every_cluster(
    alice_api, approved_ticket, binding, django_capture_on_commit_callbacks, named
):
    body = BODY if named == "absent" else BODY | {"cluster": named}
    with django_capture_on_commit_callbacks(execute=False):
        response = alice_api.post(REDEPLOYS, body, format="json")
    assert response.status_code == 202
    assert RedeployOperation.objects.get().cluster_name == ""


def _expired(requester, approver, application, redis_client):
    TicketFactory(applicant=requester, applications=[application], approved_by=approver)
    value = json.loads(redis_client.get(KEY))
    value["expires"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    redis_client.set(KEY, json.dumps(value), keepttl=True)


def _another_users(requester, approver, application, redis_client):
    TicketFactory(
        applicant=UserFactory(username="carol"), applications=[application], approved_by=approver
    )


def _another_applications(requester, approver, application, redis_client):
    TicketFactory(
        applicant=requester, applications=[ApplicationFactory(name="api")], approved_by=approver
    )


@pytest.mark.parametrize(
    "arrange",
    [None, _expired, _another_users, _another_applications],
    ids=["none", "expired", "another user's", "another application's"],
)
def test_refused_without_a_live_authorization(
    alice_api, requester, approver, application, binding, redis_client, arrange
):
    if arrange is not None:
        arrange(requester, approver, application, redis_client)

    response = alice_api.post(REDEPLOYS, BODY, format="json")

    assert response.status_code == 403
    assert response.json() == UNAUTHORIZED
    assert not RedeployOperation.objects.exists()
    assert AuditEvent.objects.filter(action="redeploy.refused", actor_username="alice").exists()


def test_refused_without_the_permission(approved_ticket, binding):
    response = client_for(UserFactory(username="mallory")).post(REDEPLOYS, BODY, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "message": "You may not redeploy applications.",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"namespace": "shop", "deploymentName": "web"}, "applicationName"),
        ({"applicationName": "web", "deploymentName": "web"}, "namespace"),
        ({"applicationName": "web", "namespace": "shop"}, "deploymentName"),
        (BODY | {"namespace": ""}, "namespace"),
        (BODY | {"namespace": 7}, "namespace"),
        (BODY | {"deploymentName": ["web"]}, "deploymentName"),
        (BODY | {"cluster": {"name": "sim"}}, "cluster"),
        (BODY | {"applicationName": "x" * 10_000}, "applicationName"),
        (BODY | {"replicas": 3}, "replicas"),
    ],
)
def test_bad_missing_or_extra_fields_are_400(alice_api, approved_ticket, body, field):
    response = alice_api.post(REDEPLOYS, body, format="json")
    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "invalid"
    assert list(data["fields"]) == [field]
    assert not RedeployOperation.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"namespace": "Shop_1"}, "Shop_1 is not a valid DNS-1123 label"),
        ({"deploymentName": "web/../x"}, "web/../x is not a valid DNS-1123 subdomain"),
    ],
)
def test_names_that_are_not_dns1123_are_400(alice_api, approved_ticket, overrides, message):
    response = alice_api.post(REDEPLOYS, BODY | overrides, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert response.json()["message"].startswith(message)


def test_a_body_that_is_not_an_object_is_400(alice_api, approved_ticket):
    response = alice_api.post(REDEPLOYS, ["web"], format="json")
    assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_broker_down_is_503_and_keeps_the_authorization(alice_api, approved_ticket, binding, sim):
    use_broker("redis://127.0.0.1:1/0")
    try:
        response = alice_api.post(REDEPLOYS, BODY, format="json")
    finally:
        use_broker(None)

    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert response.json()["message"].startswith("The task queue is not answering")
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")
    assert sim.requests == []


def test_redis_down_is_503(alice_api, approved_ticket, binding, unreachable_redis):
    response = alice_api.post(REDEPLOYS, BODY, format="json")
    assert response.status_code == 503
    assert "Redis" in response.json()["message"]


# -- GET ------------------------------------------------------------------------------------


def test_get_shows_state_targets_and_rollout_progress(
    alice_api, approved_ticket, binding, sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        operation_id = alice_api.post(REDEPLOYS, BODY, format="json").json()["id"]

    response = alice_api.get(detail_url(operation_id))

    assert response.status_code == 200
    data = response.json()
    operation = RedeployOperation.objects.get()
    target = operation.targets.get()
    assert data == {
        "id": operation_id,
        "url": f"http://testserver{detail_url(operation_id)}",
        "state": "SUCCEEDED",
        "message": operation.message,
        "applicationName": "web",
        "namespace": "shop",
        "deploymentName": "web",
        "cluster": None,
        "ticketNo": approved_ticket.ticket_no,
        "requestedBy": "alice",
        "createdAt": operation.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "startedAt": operation.started_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "finishedAt": operation.finished_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "targets": [
            {
                "id": target.pk,
                "cluster": "sim",
                "namespace": "shop",
                "deploymentName": "web",
                "state": "SUCCEEDED",
                "success": True,
                "message": target.message,
                "operatedAt": target.operated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "restartedAt": target.restarted_at,
                "generation": 2,
                "resourceVersion": target.resource_version,
                "progress": {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
                "finishedAt": target.finished_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            }
        ],
    }
    assert data["targets"][0]["restartedAt"]
    assert data["targets"][0]["resourceVersion"]


def test_get_a_queued_operation(alice_api, requester):
    operation = RedeployOperationFactory(requested_by=requester, cluster_name="sim")
    data = alice_api.get(detail_url(operation.pk)).json()
    assert (data["state"], data["cluster"], data["ticketNo"], data["startedAt"]) == (
        "QUEUED",
        "sim",
        None,
        None,
    )
    assert data["targets"] == []


def test_get_a_failed_target_before_any_restart(alice_api, requester):
    operation = RedeployOperationFactory(requested_by=requester, state="FAILED")
    RedeployTargetFactory(operation=operation, failed=True, message="Deployment does not exist")
    (target,) = alice_api.get(detail_url(operation.pk)).json()["targets"]
    assert (target["state"], target["success"], target["message"]) == (
        "FAILED",
        False,
        "Deployment does not exist",
    )
    assert (target["restartedAt"], target["generation"], target["resourceVersion"]) == (
        None,
        None,
        None,
    )
    assert target["progress"] == {
        "replicas": None,
        "updatedReplicas": None,
        "availableReplicas": None,
    }


@pytest.mark.parametrize(
    "make_viewer",
    [
        lambda: UserFactory(username="sam", is_staff=True),
        lambda: UserFactory(username="rita", permissions=["audit.view_auditevent"]),
        lambda: UserFactory(username="ruth", groups=["Reviewers"]),
    ],
    ids=["staff", "reviewer by permission", "reviewer by group"],
)
def test_staff_and_reviewers_see_any_operation(requester, make_viewer):
    operation = RedeployOperationFactory(requested_by=requester)
    response = client_for(make_viewer()).get(detail_url(operation.pk))
    assert response.status_code == 200
    assert response.json()["requestedBy"] == "alice"


def test_others_get_404(requester, approver):
    operation = RedeployOperationFactory(requested_by=requester)
    for user in (UserFactory(username="mallory"), approver):
        response = client_for(user).get(detail_url(operation.pk))
        assert response.status_code == 404
        assert response.json() == {
            "error": "not_found",
            "message": f"Redeploy {operation.pk} does not exist.",
        }


def test_unknown_or_malformed_id_is_404(alice_api):
    assert alice_api.get(detail_url(uuid.uuid4())).status_code == 404
    assert alice_api.get(detail_url("not-a-uuid")).status_code == 404


def test_list_shows_mine_newest_first(alice_api, requester):
    older = RedeployOperationFactory(requested_by=requester)
    newer = RedeployOperationFactory(requested_by=requester, application_name="api")
    RedeployOperationFactory(requested_by=UserFactory(username="carol"))

    response = alice_api.get(REDEPLOYS)

    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 2
    assert [item["id"] for item in data["results"]] == [str(newer.pk), str(older.pk)]
    assert set(data["results"][0]) >= {"state", "message", "targets", "url"}


def test_list_reads_a_page_in_a_constant_number_of_queries(
    alice_api, requester, django_assert_max_num_queries
):
    for _ in range(5):
        RedeployTargetFactory(operation=RedeployOperationFactory(requested_by=requester))
    # count, page of operations (with ticket and requester), their targets; the session user.
    with django_assert_max_num_queries(4):
        response = alice_api.get(REDEPLOYS)
    assert len(response.json()["results"]) == 5


# -- batches --------------------------------------------------------------------------------


@pytest.fixture
def two_approved(requester, approver, application, binding, cluster, sim):
    """alice's ticket for `web` and `api` (two Deployments in the simulator), approved."""
    api = ApplicationFactory(name="api")
    sim.add_deployment("shop", "api")
    BindingFactory(application=api, cluster=cluster, namespace="shop", deployment_name="api")
    return TicketFactory(applicant=requester, applications=[application, api], approved_by=approver)


def batch(*names: str) -> list[dict]:
    return [{"applicationName": n, "namespace": "shop", "deploymentName": n} for n in names]


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_queued_as_one_task_and_restarts_each(alice_api, two_approved, sim):
    response = alice_api.post(REDEPLOYS, batch("web", "api"), format="json")

    assert response.status_code == 202, response.json()
    accepted = response.json()
    assert [item["state"] for item in accepted] == ["QUEUED", "QUEUED"]
    operations = [RedeployOperation.objects.get(pk=item["id"]) for item in accepted]
    assert [o.application_name for o in operations] == ["web", "api"]
    # One task for the batch: the id every operation carries.
    assert operations[0].celery_task_id == operations[1].celery_task_id
    for operation in operations:
        assert operation.state == "SUCCEEDED", operation.message
    patched = sorted(r.path.rsplit("/", 1)[1] for r in sim.requests if r.method == "PATCH")
    assert patched == ["api", "web"]
    for name in ("web", "api"):
        assert not grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name=name)


def test_a_batch_with_one_unauthorized_queues_nothing(alice_api, approved_ticket, binding, sim):
    response = alice_api.post(REDEPLOYS, batch("web", "api"), format="json")

    assert response.status_code == 403
    assert response.json() == {
        "error": "unauthorized_access",
        "message": "Unauthorized access (no live authorization: api)",
    }
    assert not RedeployOperation.objects.exists()
    refused = dict(
        AuditEvent.objects.filter(action="redeploy.refused").values_list(
            "application_name", "message"
        )
    )
    assert refused == {"api": "Unauthorized access", "web": "Not queued: Unauthorized access"}
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")
    assert sim.requests == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "Give at least one redeploy."),
        (batch("web", "web"), "Application web is named twice; one approval allows one redeploy."),
        (batch("web", "Not_DNS"), "Redeploy 2: "),
        ([BODY, {**BODY, "extra": 1}], "[1].extra: Unknown field."),
        ([BODY, "web"], "[1]"),
    ],
    ids=["empty", "twice", "bad-name", "extra-field", "not-an-object"],
)
def test_a_bad_batch_is_400_and_queues_nothing(alice_api, approved_ticket, body, message):
    response = alice_api.post(REDEPLOYS, body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "invalid"
    assert response.json()["message"].startswith(message)
    assert not RedeployOperation.objects.exists()


def test_a_batch_has_a_size_limit(alice_api, approved_ticket, settings):
    settings.REDEPLOY_MAX_BATCH = 2
    response = alice_api.post(REDEPLOYS, batch("a", "b", "c"), format="json")
    assert response.status_code == 400
    assert "no more than 2" in response.json()["message"].lower()


def test_a_batch_refused_as_a_whole_is_one_audit_event(approved_ticket, binding):
    mallory = client_for(UserFactory(username="mallory"))
    response = mallory.post(REDEPLOYS, batch(*[f"app-{i}" for i in range(50)]), format="json")

    assert response.status_code == 403
    assert response.json()["message"] == "You may not redeploy applications."
    (refused,) = AuditEvent.objects.filter(action="redeploy.refused")
    assert refused.message == "You may not redeploy applications. (50 redeploys requested)"
