"""End to end: approval of APPLICATION_DELETE_POD → a pod deletion request → a real Celery
worker process on the real Redis broker deletes the pods on the simulator and follows their
replacements → the ticket is COMPLETED with success."""

import time

import pytest
from django.urls import reverse

from redeploy import kube, pod_deletions
from redeploy.models import PodDeletion
from redeploy.pod_listings import LIST_PODS
from tests.support import audit_actions, page
from tickets.models import Ticket, TicketEntry

FINISH_SECONDS = 30


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_approve_delete_pods_replaced_complete(
    celery_worker, requester, cluster, binding, sim, delete_pod_ticket
):
    pods = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")

    operation = pod_deletions.request_pod_deletion(
        user=requester,
        application_name="web",
        namespace="shop",
        deployment_name="web",
        pod_names=[pod.name for pod in pods],
        request_ip="192.0.2.10",
    )

    deadline = time.monotonic() + FINISH_SECONDS
    while not operation.is_finished:
        assert time.monotonic() < deadline, (
            f"The pod deletion did not finish within {FINISH_SECONDS} s (state "
            f"{operation.state}). Worker output:\n" + "".join(celery_worker)
        )
        time.sleep(0.2)
        operation.refresh_from_db()

    assert operation.state == PodDeletion.State.SUCCEEDED, operation.message
    deleted = [r.path.rsplit("/", 1)[-1] for r in sim.requests if r.method == "DELETE"]
    assert sorted(deleted) == sorted(pod.name for pod in pods)
    assert all(target.success for target in operation.targets.all())
    delete_pod_ticket.refresh_from_db()
    assert (delete_pod_ticket.state, delete_pod_ticket.success) == (Ticket.State.COMPLETED, True)
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.USED
    actions = audit_actions(operation=operation)
    assert actions[:3] == [
        "pod_deletion.requested",
        "authorization.consumed",
        "pod_deletion.started",
    ]
    assert actions.count("pod_deletion.succeeded") == 2
    # The worker process, not this one, ran it.
    assert any(f"[{operation.celery_task_id}] received" in line for line in celery_worker)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_worker_lists_the_pods_the_page_offers(
    celery_worker, as_alice, cluster, binding, delete_pod_ticket, settings
):
    # The solo worker sends the ticket's notices first; on a loaded CI machine that can take
    # longer than the product's 5 s wait. What is tested here is who lists, not how fast.
    settings.POD_LISTING_WAIT_SECONDS = FINISH_SECONDS
    pods = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")

    html = page(as_alice.get(f"{reverse('redeploy:pod-deletion-new')}?application=web"))

    for pod in pods:
        assert f'name="pods" value="{pod.name}"' in html, "".join(celery_worker)
    # The worker process, not this one, listed them.
    assert any(f"{LIST_PODS}[" in line and "succeeded" in line for line in celery_worker)
