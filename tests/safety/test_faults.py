"""Faults: each leaves a clear message and an audit row, never loses an authorization that should
survive, and never restarts a Deployment twice. Real PostgreSQL, real Redis, the Kubernetes-API
simulator, real Celery workers.

Covered elsewhere, not repeated here: the broker unreachable when the request is made
(tests/redeploy/test_tasks.py::test_unreachable_broker_fails_the_request_and_leaves_the_authorization,
test_api.py::test_broker_down_is_503_and_keeps_the_authorization,
test_views.py::test_broker_down_is_told_next_to_the_form); transient errors retried then
successful, 503s that persist, a GET hanging past the timeout, a PATCH hanging on every attempt
(tests/redeploy/test_services.py).
"""

import signal
import time

import pytest
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from cratos.exceptions import ServiceUnavailable
from redeploy import redeploys, restarts, selectors, tasks
from redeploy.models import RedeployOperation, RedeployTarget
from redeploy.providers import REDEPLOY_GRANTS
from tests.support import assert_grant_ttl, check_rollout, redis_down, run_redeploy
from tickets import grants
from tickets.models import Ticket, TicketEntry

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REDIS_DOWN = "The authorization store (Redis) is not answering; nothing was changed. Try again."
FORM = {"application": "web", "namespace": "shop", "deployment": "web", "cluster": ""}
BODY = {"applicationName": "web", "namespace": "shop", "deploymentName": "web"}
FINISH_SECONDS = 30


def request(user) -> RedeployOperation:
    return redeploys.request_redeploy(
        user=user, application_name="web", namespace="shop", deployment_name="web"
    )


def follow(operation: RedeployOperation, seconds: float = 15) -> RedeployOperation:
    """What the follow_rollouts task does, in this thread: look until every target finished."""
    deadline = time.monotonic() + seconds
    for target in operation.targets.all():
        while (delay := check_rollout(target.pk)) is not None:
            assert time.monotonic() < deadline, "the rollout was not decided in time"
            time.sleep(delay)
    return selectors.operation_by_id(operation_id=operation.pk)


def patches(sim) -> list:
    return [r for r in sim.requests if r.method == "PATCH"]


def generation(sim) -> int:
    return sim.get_deployment("shop", "web")["metadata"]["generation"]


def trail(operation: RedeployOperation) -> list[tuple[str, str]]:
    return list(
        AuditEvent.objects.filter(operation_id=operation.pk)
        .order_by("pk")
        .values_list("action", "outcome")
    )


def assert_token_kept(redis_client, ttl_before: int) -> None:
    """The authorization is live, with what was left of its lifetime (never a new one)."""
    assert (
        grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")
        is not None
    )
    assert_grant_ttl(redis_client, KEY, ttl_before)


# -- Redis unreachable when the request is made ------------------------------------------


@pytest.mark.django_db
def test_redis_down_at_request_time_api_is_503_and_creates_nothing(
    requester, approved_ticket, binding, sim, redis_client
):
    ttl = redis_client.ttl(KEY)
    client = APIClient()
    client.force_authenticate(requester)

    with redis_down():
        response = client.post("/api/v1/redeploys/", BODY, format="json")

    assert response.status_code == 503
    assert response.json() == {"error": "service_unavailable", "message": REDIS_DOWN}
    assert not RedeployOperation.objects.exists()
    assert sim.requests == []
    assert_token_kept(redis_client, ttl)
    refused = AuditEvent.objects.get(action="redeploy.refused")
    assert (refused.actor_username, refused.outcome, refused.message) == (
        "alice",
        "FAILURE",
        REDIS_DOWN,
    )


@pytest.mark.django_db
def test_redis_down_at_request_time_page_is_503_and_creates_nothing(
    client, requester, approved_ticket, binding, sim, redis_client
):
    ttl = redis_client.ttl(KEY)
    client.force_login(requester)

    with redis_down():
        form = client.get("/redeploy/")
        response = client.post("/redeploy/", FORM | {"confirmed": "1"})

    assert form.status_code == 503
    assert REDIS_DOWN in form.content.decode()
    assert response.status_code == 503
    assert REDIS_DOWN in response.content.decode()
    assert not RedeployOperation.objects.exists()
    assert sim.requests == []
    assert_token_kept(redis_client, ttl)
    refused = AuditEvent.objects.get(action="redeploy.refused")
    assert (refused.actor_username, refused.outcome, refused.message) == (
        "alice",
        "FAILURE",
        REDIS_DOWN,
    )


# -- Redis unreachable inside the task ---------------------------------------------------


@pytest.mark.django_db
def test_redis_down_in_the_task_never_stops_a_redeploy_or_its_verdict(
    requester, approved_ticket, binding, sim, redis_client
):
    """The worker needs Redis only to give a grant back or drop its held copy: with Redis away
    the restart still happens once and the verdict is recorded; the held copy expires."""
    operation = request(requester)

    with redis_down():
        operation = follow(run_redeploy(operation.pk, task_id="attempt-1"))

    assert operation.state == RedeployOperation.State.SUCCEEDED
    assert len(patches(sim)) == 1
    assert generation(sim) == 2
    assert redis_client.exists(KEY) == 0
    assert approved_ticket.entries.get().state == "USED"
    assert [action for action, _ in trail(operation)].count("authorization.consumed") == 1


@pytest.mark.django_db
def test_redis_down_when_nothing_was_restarted_audits_the_lost_authorization(
    requester, approved_ticket, application, sim, redis_client
):
    operation = request(requester)  # no binding: nothing to restart

    with redis_down():
        operation = run_redeploy(operation.pk, task_id="attempt-1")

    assert operation.state == RedeployOperation.State.FAILED
    restored = AuditEvent.objects.get(operation_id=operation.pk, action="authorization.restored")
    assert restored.outcome == "FAILURE"
    assert "Redis was away" in restored.message
    assert approved_ticket.entries.get().state == "AUTHORIZED"
    assert sim.requests == []


@pytest.mark.django_db
def test_a_service_away_through_the_last_retry_fails_the_operation_with_the_reason(
    requester, approved_ticket, binding, sim, redis_client, monkeypatch
):
    """The task gives up after its last retry: the redeploy must not stay QUEUED forever, and
    its authorization goes back."""
    operation = request(requester)
    ttl = redis_client.ttl(REDEPLOY_GRANTS.held_key(operation_id=operation.pk))

    def away(**kwargs):
        raise ServiceUnavailable(REDIS_DOWN)

    monkeypatch.setattr(restarts, "_start", away)
    # The run a worker makes once every retry was spent (no more are allowed after it).
    result = tasks.run_redeploys.apply(
        kwargs={"operation_ids": [str(operation.pk)]},
        task_id="task-gives-up",
        retries=tasks.run_redeploys.max_retries,
        throw=False,
    )

    assert result.state == "FAILURE"
    assert isinstance(result.result, ServiceUnavailable)
    operation.refresh_from_db()
    assert (operation.state, operation.message) == (RedeployOperation.State.FAILED, REDIS_DOWN)
    assert operation.finished_at is not None
    failed = AuditEvent.objects.get(operation_id=operation.pk, action="redeploy.failed")
    assert (failed.outcome, failed.message, failed.celery_task_id) == (
        "FAILURE",
        REDIS_DOWN,
        "task-gives-up",
    )
    assert sim.requests == []
    assert_token_kept(redis_client, ttl)


# -- the API server failing ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "status", "message", "calls"),
    [
        ("GET", 500, "Internal error occurred: kubesim injected 500", 3),
        (
            "PATCH",
            409,
            'Operation cannot be fulfilled on deployments.apps "web": the object has been '
            "modified; please apply your changes to the latest version and try again",
            1,
        ),
        ("PATCH", 429, "Too many requests, please try again later.", 3),
    ],
)
def test_an_api_error_that_persists_fails_with_its_message_and_keeps_the_token(
    requester, approved_ticket, binding, sim, redis_client, method, status, message, calls
):
    ttl = redis_client.ttl(KEY)
    sim.fail_next(method, "/deployments/web$", status=status, times=10, retry_after=0)

    operation = run_redeploy(request(requester).pk, task_id="task-1")

    expected = f"Operation failed err: {message}"
    assert (operation.state, operation.message) == (RedeployOperation.State.FAILED, expected)
    (target,) = operation.targets.all()
    assert (target.state, target.success, target.message, target.restarted_at) == (
        RedeployTarget.State.FAILED,
        False,
        expected,
        "",
    )
    assert [r.method for r in sim.requests].count(method) == calls
    assert generation(sim) == 1  # never restarted
    assert trail(operation)[-2:] == [
        ("redeploy.failed", "FAILURE"),
        ("authorization.restored", "SUCCESS"),
    ]
    assert AuditEvent.objects.get(operation_id=operation.pk, action="redeploy.failed").message == (
        expected
    )
    assert_token_kept(redis_client, ttl)
    approved_ticket.refresh_from_db()
    assert approved_ticket.state == Ticket.State.APPROVED
    assert approved_ticket.entries.get().state == TicketEntry.State.AUTHORIZED


@pytest.mark.django_db
def test_429_waits_as_long_as_retry_after_says_then_restarts_once(
    requester, approved_ticket, binding, sim, redis_client
):
    sim.fail_next("PATCH", "/deployments/web$", status=429, times=1, retry_after=1)
    operation = request(requester)

    started = time.monotonic()
    operation = run_redeploy(operation.pk, task_id="task-1")
    waited = time.monotonic() - started

    assert waited >= 1.0  # Retry-After (1 s) wins over the 0.05 s backoff
    assert len(patches(sim)) == 2
    assert operation.targets.get().state == RedeployTarget.State.ROLLING
    assert follow(operation).state == RedeployOperation.State.SUCCEEDED
    assert generation(sim) == 2
    assert redis_client.exists(KEY) == 0


@pytest.mark.django_db
def test_a_patch_hanging_past_the_timeout_once_restarts_only_once(
    requester, approved_ticket, binding, sim, settings, redis_client
):
    # The first PATCH is answered only after the client gave up on it, and lands then: the
    # retry carries the same restartedAt, so the two PATCHes make one restart.
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.3
    sim.hang_next("PATCH", "/deployments/web$", seconds=1.0, times=1)

    operation = run_redeploy(request(requester).pk, task_id="task-1")
    (target,) = operation.targets.all()
    time.sleep(1.2)  # the hung PATCH has landed by now

    bodies = [p.body for p in patches(sim)]
    assert len(bodies) == 2
    assert bodies[0] == bodies[1]
    assert target.state == RedeployTarget.State.ROLLING
    deployment = sim.get_deployment("shop", "web")
    assert deployment["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == (
        target.restarted_at
    )
    assert deployment["metadata"]["generation"] == 2
    assert follow(operation).state == RedeployOperation.State.SUCCEEDED
    assert redis_client.exists(KEY) == 0


# -- a worker killed in the middle of a task -----------------------------------------------

# The first worker blocks in the hung call (its own timeout is long); the second one does not.
BLOCKING_WORKER = {
    "KUBERNETES_REQUEST_TIMEOUT": "60",
    "KUBERNETES_RETRY_BACKOFF": "0.05",
    "REDEPLOY_ROLLOUT_POLL_SECONDS": "0.3",
}
SECOND_WORKER = BLOCKING_WORKER | {"KUBERNETES_REQUEST_TIMEOUT": "2"}


def wait_for(condition, what: str, seconds: float = FINISH_SECONDS, log=lambda: ""):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen in {seconds} s\n{log()}"
        time.sleep(0.05)
    return result


def kill(worker) -> None:
    """SIGKILL: no warm shutdown, no acknowledgement, nothing handed back to the broker."""
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(timeout=10)


def visibility_timeout_passed(broker) -> None:
    """As if the broker's visibility timeout had passed since the killed worker took its
    message: the next worker to start puts it back on the queue."""
    unacked = broker.zrange("unacked_index", 0, -1)
    assert unacked, "the killed worker's message was acknowledged before the task finished"
    broker.zadd("unacked_index", dict.fromkeys(unacked, 0))


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("hung", "lands", "state", "message"),
    [
        # Killed before the restart was claimed: the redelivered task restarts it.
        ("GET", False, "SUCCEEDED", 'deployment "web" successfully rolled out'),
        # Killed while the PATCH was on its way, which then landed: followed, never repeated.
        ("PATCH", True, "SUCCEEDED", 'deployment "web" successfully rolled out'),
        # Killed while the PATCH was on its way, which never landed: failed, never repeated.
        (
            "PATCH",
            False,
            "FAILED",
            "Operation failed err: the restart (restartedAt {restarted_at}) was interrupted and "
            "is not visible on the Deployment; it was not repeated",
        ),
    ],
    ids=["killed-in-get", "killed-in-patch-that-lands", "killed-in-patch-that-never-lands"],
)
def test_a_worker_killed_in_a_hung_call_is_replaced_and_restarts_at_most_once(
    start_worker,
    broker,
    requester,
    approved_ticket,
    binding,
    sim,
    redis_client,
    hung,
    lands,
    state,
    message,
):
    sim.hang_next(hung, "/deployments/web$", seconds=1.0 if lands else 120, times=1)
    first = start_worker(**BLOCKING_WORKER)

    operation = request(requester)
    wait_for(
        lambda: [r for r in sim.requests if r.method == hung], f"the {hung}", log=lambda: first.log
    )
    kill(first)

    operation.refresh_from_db()
    assert operation.state == RedeployOperation.State.RUNNING  # consumed, then killed
    target = operation.targets.get()
    assert bool(target.restarted_at) == (hung == "PATCH")  # claimed before the PATCH was sent
    if lands:
        wait_for(
            lambda: (
                sim.get_deployment("shop", "web")["spec"]["template"]["metadata"]
                .get("annotations", {})
                .get(RESTARTED_AT)
            ),
            "the hung PATCH landing",
        )
    visibility_timeout_passed(broker)
    second = start_worker(**SECOND_WORKER)

    wait_for(
        lambda: RedeployOperation.objects.get(pk=operation.pk).is_finished,
        "the redelivered redeploy",
        log=lambda: second.log,
    )
    operation = selectors.operation_by_id(operation_id=operation.pk)
    target = operation.targets.get()
    assert (operation.state, operation.message) == (
        state,
        message.format(restarted_at=target.restarted_at),
    )
    assert f"[{operation.celery_task_id}] received" in second.log
    assert len(patches(sim)) == 1
    assert generation(sim) == (2 if state == "SUCCEEDED" else 1)
    actions = [action for action, _ in trail(operation)]
    assert actions.count("authorization.consumed") == 1
    assert actions.count("redeploy.succeeded" if state == "SUCCEEDED" else "redeploy.failed") == 1
    # Applied, or perhaps applied: one approval, one redeploy.
    assert redis_client.exists(KEY) == 0
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (
        Ticket.State.COMPLETED,
        state == "SUCCEEDED",
    )


def test_a_killed_workers_redeploy_comes_back_within_minutes_not_an_hour(settings):
    """With a Redis broker an unacknowledged task is delivered again only after the transport's
    visibility timeout (kombu's default: one hour); a redeploy would show RUNNING that long."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert options.get("visibility_timeout", 3600) <= 15 * 60
