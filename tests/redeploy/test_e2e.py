"""End to end: approval → redeploy request → a real Celery worker process on the real Redis
broker restarts the Deployment on the simulator → the ticket is COMPLETED with success."""

import time

import pytest

from cratos.audit.models import AuditEvent
from redeploy import redeploys
from redeploy.models import RedeployOperation
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import ApplicationFactory, BindingFactory, ClusterFactory, TicketFactory
from tests.kubesim import KubeSimulator
from tests.redeploy.conftest import SIM_TOKEN
from tests.support import audit_actions
from tickets import grants
from tickets.models import Ticket

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
FINISH_SECONDS = 30


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_approve_redeploy_restart_complete(
    celery_worker, requester, approver, application, binding, sim
):
    ticket = TicketFactory(applicant=requester, applications=[application], approved_by=approver)

    operation = redeploys.request_redeploy(
        user=requester,
        application_name="web",
        namespace="shop",
        deployment_name="web",
        request_ip="192.0.2.10",
    )

    deadline = time.monotonic() + FINISH_SECONDS
    while not operation.is_finished:
        assert time.monotonic() < deadline, (
            f"The redeploy did not finish within {FINISH_SECONDS} s (state {operation.state}). "
            "Worker output:\n" + "".join(celery_worker)
        )
        time.sleep(0.2)
        operation.refresh_from_db()

    assert operation.state == RedeployOperation.State.SUCCEEDED, operation.message
    (patch,) = [r for r in sim.requests if r.method == "PATCH"]
    assert patch.content_type == "application/strategic-merge-patch+json"
    restarted_at = patch.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    deployment = sim.get_deployment("shop", "web")
    assert deployment["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == restarted_at
    target = operation.targets.get()
    assert (target.restarted_at, target.success, target.ticket_id) == (
        restarted_at,
        True,
        ticket.pk,
    )
    ticket.refresh_from_db()
    assert (ticket.state, ticket.success) == (Ticket.State.COMPLETED, True)
    assert audit_actions() == [
        "ticket.created",
        "ticket.entry_added",
        "ticket.submitted",
        "ticket.approved",
        "authorization.minted",
        "redeploy.requested",
        "authorization.consumed",
        "redeploy.started",
        "redeploy.succeeded",
        "rollout.complete",
        "ticket.completed",
    ]
    worker_events = AuditEvent.objects.filter(
        action__in=["authorization.consumed", "redeploy.started", "redeploy.succeeded"]
    )
    assert {event.celery_task_id for event in worker_events} == {operation.celery_task_id}
    # The worker process, not this one, ran it.
    assert any(f"[{operation.celery_task_id}] received" in line for line in celery_worker)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_batch_across_clusters_one_away_the_others_restarted_and_followed(
    celery_worker, requester, approver, application, binding, sim
):
    """One request, three clusters: the one that refuses connections fails its redeploy and
    gets its authorization back; the others restart and are followed to their end."""
    with KubeSimulator(token=SIM_TOKEN, rollout_step_seconds=0.1) as other_sim:
        other_sim.add_deployment("shop", "api")
        placed = {
            "api": ClusterFactory(name="other", server=other_sim.url, token=SIM_TOKEN),
            "gone": ClusterFactory(name="away", server="http://127.0.0.1:1", token="x"),
        }
        applications = [application]
        for name, cluster in placed.items():
            applications.append(ApplicationFactory(name=name))
            BindingFactory(
                application=applications[-1],
                cluster=cluster,
                namespace="shop",
                deployment_name=name,
            )
        TicketFactory(applicant=requester, applications=applications, approved_by=approver)

        operations = redeploys.request_redeploys(
            user=requester,
            items=[
                redeploys.RedeployRequest(application_name=n, namespace="shop", deployment_name=n)
                for n in ("web", "api", "gone")
            ],
        )

        deadline = time.monotonic() + FINISH_SECONDS
        while not all(o.is_finished for o in operations):
            assert time.monotonic() < deadline, "Worker output:\n" + "".join(celery_worker)
            time.sleep(0.2)
            for operation in operations:
                operation.refresh_from_db()

    states = {o.application_name: o.state for o in operations}
    assert states == {
        "web": RedeployOperation.State.SUCCEEDED,
        "api": RedeployOperation.State.SUCCEEDED,
        "gone": RedeployOperation.State.FAILED,
    }
    assert [r.method for r in sim.requests].count("PATCH") == 1
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="gone")
    # One task restarted all three.
    assert len({o.celery_task_id for o in operations}) == 1
