"""End to end: approval → redeploy request → a real Celery worker process on the real Redis
broker restarts the Deployment on the simulator → the ticket is COMPLETED with success."""

import time

import pytest

from cratos.audit.models import AuditEvent
from redeploy import redeploys
from redeploy.models import RedeployOperation
from tests.factories import TicketFactory
from tests.support import audit_actions
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
