"""The Celery tasks, run in-process (always-eager, as without a broker) and against a broker
that does not answer."""

import pytest
from celery.exceptions import Retry
from celery.signals import worker_before_create_process
from django.db import InterfaceError, OperationalError

from cratos.audit.models import AuditEvent
from cratos.celery import app as celery_app
from cratos.exceptions import ServiceUnavailable
from redeploy import redeploys, restarts, tasks
from redeploy.models import RedeployOperation, RedeployTarget
from redeploy.providers import REDEPLOY_GRANTS
from tests.redeploy.conftest import use_broker
from tests.support import assert_grant_ttl
from tickets import grants
from tickets.models import Ticket

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"


def request(user) -> RedeployOperation:
    return redeploys.request_redeploy(
        user=user, application_name="web", namespace="shop", deployment_name="web"
    )


def test_tasks_are_acknowledged_late_and_retry_when_a_service_is_away():
    for task in (
        tasks.run_redeploys,
        tasks.follow_rollouts,
        tasks.run_pod_deletion,
        tasks.follow_pod_deletions,
    ):
        assert task.acks_late is True
        assert set(task.autoretry_for) == {ServiceUnavailable, OperationalError, InterfaceError}
        assert task.max_retries == 5
        assert task.retry_backoff is True


@pytest.mark.django_db
@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_a_database_error_is_retried_and_the_last_try_fails_the_queued_redeploy(
    requester, approved_ticket, binding, sim, redis_client, monkeypatch, error
):
    operation = request(requester)
    held = REDEPLOY_GRANTS.held_key(operation_id=operation.pk)
    remaining = redis_client.ttl(held)

    def cut(**kwargs):
        raise error("server closed the connection unexpectedly")

    monkeypatch.setattr(restarts, "_start", cut)
    with pytest.raises(Retry):
        tasks.run_redeploys.apply(kwargs={"operation_ids": [str(operation.pk)]}, task_id="try-1")
    operation.refresh_from_db()
    assert operation.state == "QUEUED"
    assert redis_client.exists(held) == 1

    last = tasks.run_redeploys.apply(
        kwargs={"operation_ids": [str(operation.pk)]},
        task_id="try-last",
        retries=tasks.run_redeploys.max_retries,
        throw=False,
    )

    assert last.state == "FAILURE"
    operation.refresh_from_db()
    assert (operation.state, operation.message) == ("FAILED", tasks.DATABASE_AWAY)
    assert sim.requests == []
    assert_grant_ttl(redis_client, KEY, remaining)


def test_rollouts_are_watched_from_a_queue_of_their_own():
    """A watch holds its worker for a while: the next redeploy must not wait behind it."""
    route = celery_app.amqp.router.route
    assert route({}, tasks.follow_rollouts.name)["queue"].name == "rollouts"
    assert route({}, tasks.run_redeploys.name)["queue"].name == "celery"


def test_a_worker_of_every_queue_takes_restarts_before_the_notices_queued_earlier(broker):
    """During a burst a restart someone waits for goes first (the Redis broker's order)."""
    queues = celery_app.amqp.queues
    with celery_app.connection_for_write() as connection:
        producer = connection.Producer()
        for name in ("notices", "rollouts", "celery", "celery"):
            producer.publish({"queue": name}, routing_key=name, declare=[queues[name]])
    taken = []

    def take(body, message):
        taken.append(body["queue"])
        message.ack()

    with (
        celery_app.connection_for_read() as connection,
        connection.Consumer(list(queues.values()), callbacks=[take]),
    ):
        while len(taken) < 4:
            connection.drain_events(timeout=5)
    assert taken == ["celery", "celery", "rollouts", "notices"]


def test_a_prefork_worker_loads_the_kube_api_classes_before_it_forks_a_child():
    """Sent in the worker's main process before each child of the prefork pool is forked: the
    children inherit the classes instead of each building them on its first redeploy."""
    assert tasks._load_kube_api_classes in worker_before_create_process._live_receivers(sender=None)


@pytest.mark.django_db(transaction=True)
def test_request_runs_the_task_after_commit_and_follows_the_rollout_without_a_broker(
    requester, approved_ticket, binding, sim
):
    operation = request(requester)

    operation.refresh_from_db()
    assert operation.state == RedeployOperation.State.SUCCEEDED
    target = operation.targets.get()
    assert (target.state, target.success) == (RedeployTarget.State.SUCCEEDED, True)
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, True)
    # The task id chosen at request time is the one the task ran under.
    started = AuditEvent.objects.get(action="redeploy.started")
    assert started.celery_task_id == operation.celery_task_id


@pytest.mark.django_db
def test_run_redeploy_task_records_its_task_id(requester, approved_ticket, binding, sim):
    operation = RedeployOperation.objects.create(
        requested_by=requester, application_name="web", namespace="shop", deployment_name="web"
    )

    tasks.run_redeploys.apply(kwargs={"operation_ids": [str(operation.pk)]}, task_id="task-42")

    operation.refresh_from_db()
    assert operation.celery_task_id == "task-42"
    assert operation.state == RedeployOperation.State.SUCCEEDED
    assert AuditEvent.objects.get(action="rollout.complete").celery_task_id
    assert AuditEvent.objects.get(action="redeploy.succeeded").celery_task_id == "task-42"


@pytest.mark.django_db(transaction=True)
def test_unreachable_broker_fails_the_request_and_leaves_the_authorization(
    requester, approved_ticket, binding, sim
):
    use_broker("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ServiceUnavailable, match="The task queue is not answering"):
            request(requester)
    finally:
        use_broker(None)

    operation = RedeployOperation.objects.get()
    assert operation.state == RedeployOperation.State.FAILED
    assert operation.message.startswith("The task queue is not answering")
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")
    assert [
        e.action for e in AuditEvent.objects.filter(operation_id=operation.pk).order_by("pk")
    ] == [
        "redeploy.requested",
        "authorization.consumed",
        "redeploy.failed",
        "authorization.restored",
    ]
    assert sim.requests == []
