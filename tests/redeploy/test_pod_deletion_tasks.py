"""The pod-delete Celery tasks, run in-process (always-eager, as without a broker) and against
a broker that does not answer."""

import pytest

from cratos.audit.models import AuditEvent
from cratos.exceptions import ServiceUnavailable
from redeploy import kube, pod_deletions, tasks
from redeploy.models import PodDeletion
from redeploy.providers import DELETE_POD_GRANTS
from tests.redeploy.conftest import use_broker
from tickets import grants
from tickets.models import Ticket


def request(user, names) -> PodDeletion:
    return pod_deletions.request_pod_deletion(
        user=user,
        application_name="web",
        namespace="shop",
        deployment_name="web",
        pod_names=names,
    )


def test_tasks_are_acknowledged_late_and_retry_when_a_service_is_away():
    for task in (tasks.run_pod_deletion, tasks.follow_pod_deletions):
        assert task.acks_late is True
        assert ServiceUnavailable in task.autoretry_for
        assert task.max_retries == 5


@pytest.mark.django_db(transaction=True)
def test_request_runs_the_task_after_commit_and_follows_without_a_broker(
    requester, cluster, binding, sim, delete_pod_ticket
):
    pods = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")

    operation = request(requester, [pods[0].name])

    operation.refresh_from_db()
    assert operation.state == PodDeletion.State.SUCCEEDED, operation.message
    delete_pod_ticket.refresh_from_db()
    assert delete_pod_ticket.state == Ticket.State.COMPLETED
    started = AuditEvent.objects.filter(action="pod_deletion.started").first()
    assert started.celery_task_id == operation.celery_task_id


@pytest.mark.django_db(transaction=True)
def test_unreachable_broker_fails_the_request_and_gives_the_grant_back(
    requester, cluster, binding, sim, delete_pod_ticket
):
    use_broker("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ServiceUnavailable, match="The task queue is not answering"):
            request(requester, ["web-1"])
    finally:
        use_broker(None)

    operation = PodDeletion.objects.get()
    assert operation.state == PodDeletion.State.FAILED
    assert grants.live_grant(kind=DELETE_POD_GRANTS, username="alice", application_name="web")
    assert [
        e.action for e in AuditEvent.objects.filter(operation_id=operation.pk).order_by("pk")
    ] == [
        "pod_deletion.requested",
        "authorization.consumed",
        "pod_deletion.failed",
        "authorization.restored",
    ]
    assert [r for r in sim.requests if r.method == "DELETE"] == []
