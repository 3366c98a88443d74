"""Races on one authorization and on one approval node, against the real PostgreSQL, the real
Redis (authorizations and broker) and the Kubernetes-API simulator.

Two approvers approving one node at the same instant through the services is
tests/tickets/test_services.py::test_two_approvers_approving_at_once_mint_once; here the race
runs through the API, where each approver is a separate request.
"""

import threading
import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from redeploy import redeploys, selectors
from redeploy.models import RedeployOperation
from tests.factories import ApplicationFactory, TicketFactory, UserFactory
from tests.support import check_rollout, run_redeploy
from tickets.grants import UnauthorizedAccess
from tickets.models import Approval, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
ATTEMPTS = 100
# Database connections used at once. The PostgreSQL of this machine allows 100 in all and other
# suites run beside this one, so the attempts share 40; every one of them still races on Redis.
CONNECTIONS = 40
RACE_SECONDS = 30

WINNER_TRAIL = [
    "redeploy.requested",
    "authorization.consumed",
    "redeploy.started",
    "redeploy.succeeded",
    "rollout.complete",
]


def race(calls, *, connections: int = CONNECTIONS) -> list:
    """Run every call in its own thread, all released at once; each thread closes its database
    connection. Returns each call's result or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    gate = threading.BoundedSemaphore(connections)
    outcomes: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=RACE_SECONDS)
            with gate:
                try:
                    outcomes[index] = call()
                finally:
                    connection.close()
        except Exception as error:  # kept as the outcome; a thread must not die silently
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=RACE_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a racing call never returned"
    return outcomes


def follow(operation: RedeployOperation, seconds: float = 15) -> RedeployOperation:
    """What the follow_rollouts task does, in this thread: look until every target finished."""
    deadline = time.monotonic() + seconds
    for target in operation.targets.all():
        while (delay := check_rollout(target.pk)) is not None:
            assert time.monotonic() < deadline, "the rollout was not decided in time"
            time.sleep(delay)
    return selectors.operation_by_id(operation_id=operation.pk)


def trail(operation: RedeployOperation) -> list[str]:
    return list(
        AuditEvent.objects.filter(operation_id=operation.pk)
        .order_by("pk")
        .values_list("action", flat=True)
    )


def test_a_hundred_redeploys_on_one_authorization_restart_once(
    requester, approved_ticket, binding, sim, broker, redis_client
):
    started = time.monotonic()
    requests = race(
        [
            lambda n=n: redeploys.request_redeploy(
                user=requester,
                application_name="web",
                namespace="shop",
                deployment_name="web",
                request_ip=f"192.0.2.{n + 1}",
            )
            for n in range(ATTEMPTS)
        ]
    )
    # A request takes the authorization in the transaction that creates its operation: of the
    # hundred exactly one is queued, the others are refused at once.
    queued = [outcome for outcome in requests if isinstance(outcome, RedeployOperation)]
    refused = [outcome for outcome in requests if outcome not in queued]
    assert len(queued) == 1
    assert {type(error) for error in refused} == {UnauthorizedAccess}
    assert broker.llen("celery") == 1
    assert RedeployOperation.objects.count() == 1

    # The message delivered to many workers at the same instant: still one restart.
    (winner,) = queued
    runs = race([lambda: run_redeploy(winner.pk, task_id=winner.celery_task_id)] * 5)
    assert [outcome for outcome in runs if not isinstance(outcome, RedeployOperation)] == []
    winner = follow(selectors.operation_by_id(operation_id=winner.pk))
    elapsed = time.monotonic() - started

    assert [r.method for r in sim.requests].count("PATCH") == 1
    assert sim.get_deployment("shop", "web")["metadata"]["generation"] == 2
    assert winner.state == RedeployOperation.State.SUCCEEDED, (
        [(target.state, target.message) for target in winner.targets.all()],
        trail(winner),
    )
    assert redis_client.exists(KEY) == 0  # one approval, one redeploy

    # Every attempt is audited, with its own address (and task id, once queued).
    assert trail(winner) == WINNER_TRAIL
    refusals = AuditEvent.objects.filter(action="redeploy.refused")
    assert refusals.count() == ATTEMPTS - 1
    assert set(refusals.values_list("message", flat=True)) == {"Unauthorized access"}
    addresses = AuditEvent.objects.filter(action__in=["redeploy.requested", "redeploy.refused"])
    assert len(set(addresses.values_list("request_ip", flat=True))) == ATTEMPTS
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, True)
    assert elapsed < RACE_SECONDS


def test_approvers_racing_through_the_api_decide_once_and_mint_once(redis_client):
    web = ApplicationFactory(name="web")
    approvers = [UserFactory(username=f"approver{n}", groups=["Approvers"]) for n in range(8)]
    ticket = TicketFactory(
        applicant=UserFactory(username="alice"), applications=[web], submitted=True
    )
    clients = []
    for approver in approvers:
        client = APIClient()
        client.force_authenticate(approver)
        clients.append(client)
    url = f"/api/v1/tickets/{ticket.ticket_no}/approve/"

    responses = race([lambda client=client: client.post(url, format="json") for client in clients])

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [409] * (len(approvers) - 1), [r.json() for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json() == {
                "error": "invalid_transition",
                "message": f"Ticket {ticket.ticket_no} is APPROVED; it cannot be approved.",
            }
    assert Approval.objects.filter(ticket=ticket).count() == 1
    assert AuditEvent.objects.filter(ticket_id=ticket.pk, action="ticket.approved").count() == 1
    assert (
        AuditEvent.objects.filter(ticket_id=ticket.pk, action="authorization.minted").count() == 1
    )
    assert len(redis_client.keys("APPLICATION:REDEPLOY:TOKEN:*")) == 1


def test_an_approver_who_lost_the_race_hears_why_through_the_api(redis_client):
    """The vote that arrives just after another approver's is refused for what it is: as on the
    approval queue page, not as if the ticket did not exist."""
    web = ApplicationFactory(name="web")
    bob = UserFactory(username="bob", groups=["Approvers"])
    dave = UserFactory(username="dave", groups=["Approvers"])
    ticket = TicketFactory(
        applicant=UserFactory(username="alice"), applications=[web], submitted=True
    )
    first, late = APIClient(), APIClient()
    first.force_authenticate(dave)
    late.force_authenticate(bob)

    assert first.post(f"/api/v1/tickets/{ticket.ticket_no}/approve/").status_code == 200
    for action, body in (("approve", {}), ("reject", {"reason": "No"})):
        response = late.post(f"/api/v1/tickets/{ticket.ticket_no}/{action}/", body, format="json")

        verb = "approved" if action == "approve" else "rejected"
        assert response.status_code == 409, response.json()
        assert response.json() == {
            "error": "invalid_transition",
            "message": f"Ticket {ticket.ticket_no} is APPROVED; it cannot be {verb}.",
        }
    assert Approval.objects.get(ticket=ticket).approver == dave
