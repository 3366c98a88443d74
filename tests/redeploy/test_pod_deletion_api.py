"""The pod-delete JSON API: POST /api/v1/pod-deletions/ (202), GET one. Real PostgreSQL, Redis
and the simulator; the task runs in-process once the request's transaction committed."""

import pytest
from django.core import mail
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from redeploy import kube
from redeploy.models import PodDeletion
from tests.factories import UserFactory
from tests.support import client_for
from tickets.models import TicketEntry

pytestmark = pytest.mark.django_db

POD_DELETIONS = "/api/v1/pod-deletions/"
BODY = {"applicationName": "web", "namespace": "shop", "deploymentName": "web"}
UNAUTHORIZED = {"error": "unauthorized_access", "message": "Unauthorized access"}


@pytest.fixture
def alice_api(requester) -> APIClient:
    return client_for(requester)


def pod_names(cluster) -> list[str]:
    pods = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    return [pod.name for pod in pods]


def post(api, names, django_capture_on_commit_callbacks, **more):
    """POST and run what was queued on commit (the task, eager in tests)."""
    with django_capture_on_commit_callbacks(execute=True):
        return api.post(POD_DELETIONS, BODY | {"podNames": names} | more, format="json")


def test_anonymous_is_refused(delete_pod_ticket):
    response = APIClient().post(POD_DELETIONS, BODY | {"podNames": ["x"]}, format="json")
    assert response.status_code == 401


def test_a_batch_of_pods_is_one_operation_202_then_polled_to_success(
    alice_api, cluster, binding, sim, delete_pod_ticket, django_capture_on_commit_callbacks
):
    names = pod_names(cluster)

    response = post(alice_api, names, django_capture_on_commit_callbacks, cluster="sim")

    assert response.status_code == 202, response.json()
    operation = PodDeletion.objects.get()
    url = f"http://testserver{POD_DELETIONS}{operation.pk}/"
    assert response.json() == {"id": str(operation.pk), "state": "QUEUED", "url": url}
    assert response["Location"] == url
    shown = alice_api.get(url).json()
    assert shown["state"] == "SUCCEEDED"
    assert sorted(t["podName"] for t in shown["targets"]) == sorted(names)
    assert all(t["success"] and t["deleted"] for t in shown["targets"])
    assert shown["ticketNo"] == delete_pod_ticket.ticket_no
    assert len([r for r in sim.requests if r.method == "DELETE"]) == 2
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.USED
    # The finished notice, written by the provider's side, sent by tickets.
    notice = next(m for m in mail.outbox if "Pod deletion of web" in m.subject)
    assert notice.subject == "Pod deletion of web succeeded"
    assert all(name in notice.body for name in names)


def test_a_second_attempt_is_refused(
    alice_api, cluster, binding, delete_pod_ticket, django_capture_on_commit_callbacks
):
    first = post(alice_api, pod_names(cluster)[:1], django_capture_on_commit_callbacks)
    assert first.status_code == 202

    second = post(alice_api, pod_names(cluster)[:1], django_capture_on_commit_callbacks)

    assert second.status_code == 403
    assert second.json() == UNAUTHORIZED


def test_without_an_authorization_403_unauthorized_access(
    alice_api, cluster, binding, approved_ticket
):
    response = alice_api.post(POD_DELETIONS, BODY | {"podNames": ["web-1"]}, format="json")

    assert response.status_code == 403
    assert response.json() == UNAUTHORIZED
    assert AuditEvent.objects.filter(action="pod_deletion.refused").exists()


def test_a_pod_that_does_not_exist_fails_its_target_with_the_message(
    alice_api, cluster, binding, delete_pod_ticket, django_capture_on_commit_callbacks
):
    response = post(alice_api, ["web-nope"], django_capture_on_commit_callbacks)

    assert response.status_code == 202
    shown = alice_api.get(response.json()["url"]).json()
    assert shown["state"] == "FAILED"
    (target,) = shown["targets"]
    assert target["message"] == "The pod=web-nope resource does not exist"
    assert target["deleted"] is False
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.AUTHORIZED


def test_bad_bodies_are_400_in_the_common_format(alice_api, delete_pod_ticket):
    response = alice_api.post(POD_DELETIONS, BODY | {"podNames": []}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "Give at least one pod."
    response = alice_api.post(POD_DELETIONS, BODY | {"podNames": "web-1"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"error", "message"}


def test_others_cannot_see_the_operation(
    alice_api, cluster, binding, delete_pod_ticket, django_capture_on_commit_callbacks
):
    url = post(alice_api, ["web-nope"], django_capture_on_commit_callbacks).json()["url"]

    response = client_for(UserFactory(username="mallory")).get(url)

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
