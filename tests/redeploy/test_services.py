"""The redeploy services against real PostgreSQL, real Redis and the simulator over HTTP."""

import contextlib
import threading
import time

import pytest
from django.db import connection

from cratos.audit.models import AuditEvent
from cratos.exceptions import PermissionRefused, ServiceUnavailable, ValidationFailed
from redeploy import in_flight, kube, operations, redeploys, restarts, rollouts, selectors
from redeploy.models import RedeployOperation, RedeployTarget
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import (
    ApplicationFactory,
    BindingFactory,
    ClusterFactory,
    TicketFactory,
    UserFactory,
)
from tests.support import assert_grant_ttl, audit_actions, check_rollout, run_redeploy
from tickets import grants
from tickets.grants import UnauthorizedAccess
from tickets.models import Ticket, TicketEntry

pytestmark = pytest.mark.django_db

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def request(user, **overrides) -> RedeployOperation:
    fields = {"application_name": "web", "namespace": "shop", "deployment_name": "web"}
    return redeploys.request_redeploy(user=user, request_ip="10.0.0.7", **(fields | overrides))


def run(operation: RedeployOperation, task_id: str = "task-1") -> RedeployOperation:
    return run_redeploy(operation.pk, task_id=task_id)


def follow(operation: RedeployOperation, seconds: float = 15) -> RedeployOperation:
    """What the follow_rollouts task does, in this thread: look until every target finished."""
    deadline = time.monotonic() + seconds
    for target in operation.targets.all():
        while (delay := check_rollout(target.pk, task_id="poll")) is not None:
            assert time.monotonic() < deadline, "the rollout was not decided in time"
            time.sleep(delay)
    return selectors.operation_by_id(operation_id=operation.pk)


def patches(sim):
    return [r for r in sim.requests if r.method == "PATCH"]


def assert_restored(redis_client, ttl_before: int) -> None:
    token = grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")
    assert token is not None, "the authorization was not put back"
    assert_grant_ttl(redis_client, KEY, ttl_before)  # remaining TTL, not a new one, nor none


# -- request (the fast check) ------------------------------------------------------------


def test_request_without_authorization_is_refused_and_audited(requester, binding):
    with pytest.raises(UnauthorizedAccess) as refused:
        request(requester)

    assert refused.value.message == "Unauthorized access"
    assert refused.value.code == "unauthorized_access"
    assert refused.value.status_code == 403
    assert not RedeployOperation.objects.exists()
    event = AuditEvent.objects.get(action="redeploy.refused")
    assert (event.actor_username, event.outcome, event.message, event.request_ip) == (
        "alice",
        "FAILURE",
        "Unauthorized access",
        "10.0.0.7",
    )
    assert (event.application_name, event.namespace, event.deployment_name) == (
        "web",
        "shop",
        "web",
    )


def test_another_users_or_applications_authorization_does_not_count(
    requester, approved_ticket, binding
):
    carol = UserFactory(username="carol")
    carol.user_permissions.set(requester.user_permissions.all())
    ApplicationFactory(name="api")

    with pytest.raises(UnauthorizedAccess):
        request(carol)
    with pytest.raises(UnauthorizedAccess):
        request(requester, application_name="api")
    assert AuditEvent.objects.filter(action="redeploy.refused").count() == 2


def test_request_needs_the_permission(approved_ticket, binding):
    outsider = UserFactory(username="mallory")
    with pytest.raises(PermissionRefused, match=r"^You may not redeploy applications\.$"):
        request(outsider)
    assert AuditEvent.objects.filter(action="redeploy.refused", actor_username="mallory").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"namespace": " "}, "Give the namespace."),
        ({"application_name": "", "deployment_name": ""}, "Give the application name, deployment"),
        ({"namespace": "Shop_1"}, "is not a valid DNS-1123 label"),
        ({"deployment_name": "web/../x"}, "is not a valid DNS-1123 subdomain"),
    ],
)
def test_request_validates_its_fields(requester, approved_ticket, overrides, message):
    with pytest.raises(ValidationFailed, match=message):
        request(requester, **overrides)


def test_request_takes_the_authorization_and_enqueues_after_commit(
    requester, approved_ticket, binding, redis_client, sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        operation = request(requester, cluster_name="sim")

    assert len(callbacks) == 1
    assert operation.state == RedeployOperation.State.QUEUED
    assert (operation.cluster_name, operation.request_ip) == ("sim", "10.0.0.7")
    assert operation.ticket_id == approved_ticket.pk
    assert operation.authorization_expires_at is not None
    assert operation.celery_task_id
    # Taken at once: held for the operation, gone from its key, the entry in use.
    assert redis_client.exists(KEY) == 0
    assert redis_client.exists(REDEPLOY_GRANTS.held_key(operation_id=operation.pk)) == 1
    assert approved_ticket.entries.get().state == TicketEntry.State.IN_USE
    assert not operation.targets.exists()
    assert sim.requests == []  # nothing reaches the cluster from the request
    assert audit_actions(operation=operation) == ["redeploy.requested", "authorization.consumed"]
    event = AuditEvent.objects.get(action="redeploy.requested")
    assert (event.operation_id, event.celery_task_id) == (operation.pk, operation.celery_task_id)


def test_a_second_request_on_one_approval_is_refused_at_once(requester, approved_ticket, binding):
    request(requester)

    with pytest.raises(UnauthorizedAccess):
        request(requester)
    assert RedeployOperation.objects.count() == 1
    assert AuditEvent.objects.filter(action="redeploy.refused").count() == 1


def test_a_request_with_redis_away_is_refused_and_nothing_is_queued(
    requester, approved_ticket, binding, redis_client, unreachable_redis
):
    with pytest.raises(ServiceUnavailable):
        request(requester)

    assert not RedeployOperation.objects.exists()
    assert AuditEvent.objects.get(action="redeploy.refused").outcome == "FAILURE"
    assert redis_client.exists(KEY) == 1


def test_a_request_whose_transaction_fails_puts_the_authorization_back(
    requester, approved_ticket, binding, redis_client, monkeypatch
):
    def failing(*args, **kwargs):
        raise RuntimeError("the database went away")

    # The last write of the request's transaction, once the grant was taken.
    monkeypatch.setattr(RedeployOperation.objects, "filter", failing)
    with pytest.raises(RuntimeError):
        request(requester)

    assert not RedeployOperation.objects.exists()
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")
    assert not redis_client.keys("APPLICATION:REDEPLOY:HELD:*")
    assert approved_ticket.entries.get().state == TicketEntry.State.AUTHORIZED


def test_redeploy_restarts_like_kubectl_and_consumes_the_authorization(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = run(request(requester))

    assert operation.state == RedeployOperation.State.RUNNING
    assert operation.ticket == approved_ticket
    (patch,) = patches(sim)
    restarted_at = patch.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    (target,) = operation.targets.all()
    deployment = sim.get_deployment("shop", "web")
    assert target.state == RedeployTarget.State.ROLLING
    assert target.restarted_at == restarted_at
    assert target.generation == deployment["metadata"]["generation"] == 2
    assert 0 < int(target.resource_version) <= int(deployment["metadata"]["resourceVersion"])
    assert (target.ticket, target.cluster_name, target.namespace, target.deployment_name) == (
        approved_ticket,
        "sim",
        "shop",
        "web",
    )
    assert target.operated_at is not None
    assert redis_client.exists(KEY) == 0
    assert audit_actions(operation=operation) == [
        "redeploy.requested",
        "authorization.consumed",
        "redeploy.started",
        "redeploy.succeeded",
    ]
    succeeded = AuditEvent.objects.get(action="redeploy.succeeded")
    assert (succeeded.generation, succeeded.cluster_name, succeeded.celery_task_id) == (
        2,
        "sim",
        "task-1",
    )
    assert succeeded.ticket_no == approved_ticket.ticket_no


def test_rollout_complete_completes_the_ticket_with_success(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = follow(run(request(requester)))

    (target,) = operation.targets.all()
    assert operation.state == RedeployOperation.State.SUCCEEDED
    assert operation.message == 'deployment "web" successfully rolled out'
    assert (target.state, target.success, target.message) == (
        RedeployTarget.State.SUCCEEDED,
        True,
        'deployment "web" successfully rolled out',
    )
    assert (target.updated_replicas, target.available_replicas) == (2, 2)
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, True)
    entry = approved_ticket.entries.get()
    assert (entry.state, entry.success) == (TicketEntry.State.USED, True)
    assert redis_client.exists(KEY) == 0  # one approval, one redeploy
    assert audit_actions(action__in=["rollout.complete", "ticket.completed"]) == [
        "rollout.complete",
        "ticket.completed",
    ]
    assert list(selectors.redeploy_targets_of(ticket=approved_ticket)) == [target]


def test_progress_deadline_exceeded_fails_the_rollout(
    requester, approved_ticket, application, cluster, sim, redis_client
):
    sim.add_deployment("shop", "web", replicas=2, progress_deadline_seconds=1)
    BindingFactory(
        application=application, cluster=cluster, namespace="shop", deployment_name="web"
    )
    sim.stall("shop", "web")

    operation = follow(run(request(requester)))

    (target,) = operation.targets.all()
    assert operation.state == RedeployOperation.State.FAILED
    assert (target.state, target.success, target.message) == (
        RedeployTarget.State.FAILED,
        False,
        'deployment "web" exceeded its progress deadline',
    )
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, False)
    assert redis_client.exists(KEY) == 0  # the restart was applied: it stays consumed
    assert AuditEvent.objects.get(action="rollout.failed").outcome == "FAILURE"


def test_missing_binding_restores_the_authorization(
    requester, approved_ticket, application, redis_client, sim
):
    ttl = redis_client.ttl(KEY)
    operation = run(request(requester, deployment_name="nope"))

    assert (operation.state, operation.message) == (
        RedeployOperation.State.FAILED,
        "The deployment=nope resource does not exist",
    )
    (target,) = operation.targets.all()
    assert (target.ticket, target.success, target.deployment_name) == (
        approved_ticket,
        False,
        "nope",
    )
    assert_restored(redis_client, ttl)
    approved_ticket.refresh_from_db()
    assert approved_ticket.state == Ticket.State.APPROVED
    assert approved_ticket.entries.get().state == TicketEntry.State.AUTHORIZED
    assert audit_actions(operation=operation)[-2:] == ["redeploy.failed", "authorization.restored"]


def test_missing_deployment_restores_the_authorization(
    requester, approved_ticket, application, cluster, sim, redis_client
):
    BindingFactory(
        application=application, cluster=cluster, namespace="shop", deployment_name="web"
    )
    ttl = redis_client.ttl(KEY)

    operation = run(request(requester))

    assert operation.message == "Deployment does not exist"
    assert_restored(redis_client, ttl)
    assert patches(sim) == []


def test_paused_deployment_is_refused_like_kubectl(
    requester, approved_ticket, application, cluster, sim, redis_client
):
    sim.add_deployment("shop", "web", paused=True)
    BindingFactory(
        application=application, cluster=cluster, namespace="shop", deployment_name="web"
    )

    operation = run(request(requester))

    assert operation.message == (
        "Operation failed err: can't restart paused deployment (run rollout resume first)"
    )
    assert patches(sim) == []
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")


def test_a_batch_restarts_side_by_side_and_each_operation_keeps_its_own_verdict(
    requester, approver, application, binding, cluster, sim, redis_client
):
    paused = ApplicationFactory(name="paused")
    sim.add_deployment("shop", "paused", paused=True)
    BindingFactory(application=paused, cluster=cluster, namespace="shop", deployment_name="paused")
    TicketFactory(applicant=requester, applications=[application, paused], approved_by=approver)
    web, held = redeploys.request_redeploys(
        user=requester,
        items=[
            redeploys.RedeployRequest(application_name=name, namespace="shop", deployment_name=name)
            for name in ("web", "paused")
        ],
    )

    operations = restarts.run_redeploys(operation_ids=[web.pk, held.pk], task_id="batch-1")

    by_name = {operation.application_name: operation for operation in operations}
    assert follow(by_name["web"]).state == RedeployOperation.State.SUCCEEDED
    assert by_name["paused"].state == RedeployOperation.State.FAILED
    assert "can't restart paused deployment" in by_name["paused"].message
    assert [r.path.rsplit("/", 1)[1] for r in patches(sim)] == ["web"]
    # One approval, one redeploy: web's is used, the refused one's is put back.
    assert redis_client.exists(KEY) == 0
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="paused")


@pytest.fixture
def web_and_api(requester, approver, application, binding, cluster, sim):
    """alice's live authorizations for `web` and `api` (two Deployments), and her batch."""
    api = ApplicationFactory(name="api")
    sim.add_deployment("shop", "api")
    BindingFactory(application=api, cluster=cluster, namespace="shop", deployment_name="api")
    TicketFactory(applicant=requester, applications=[application, api], approved_by=approver)
    return redeploys.request_redeploys(
        user=requester,
        items=[
            redeploys.RedeployRequest(application_name=n, namespace="shop", deployment_name=n)
            for n in ("web", "api")
        ],
    )


def test_an_unforeseen_error_in_one_restart_spares_the_others(web_and_api, sim, monkeypatch):
    restart = kube.restart_deployment

    def broken_for_api(**call):
        if call["name"] == "api":
            raise TypeError("unforeseen")
        return restart(**call)

    monkeypatch.setattr(kube, "restart_deployment", broken_for_api)

    operations = restarts.run_redeploys(operation_ids=[o.pk for o in web_and_api])

    web, api = sorted(operations, key=lambda o: o.application_name != "web")
    assert follow(web).state == RedeployOperation.State.SUCCEEDED
    assert api.state == RedeployOperation.State.FAILED
    assert api.message == (
        "Operation failed err: unforeseen (the restart may have been applied; it was not repeated)"
    )
    # Perhaps applied: used, not put back.
    assert not grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="api")


def test_an_unforeseen_error_looking_at_one_rollout_spares_the_others(
    web_and_api, sim, monkeypatch
):
    operations = restarts.run_redeploys(operation_ids=[o.pk for o in web_and_api])
    targets = {o.application_name: o.targets.get().pk for o in operations}
    status = kube.rollout_status

    def broken_for_api(deployment):
        if deployment["metadata"]["name"] == "api":
            raise TypeError("unforeseen")
        return status(deployment)

    monkeypatch.setattr(kube, "rollout_status", broken_for_api)
    time.sleep(1)  # both rollouts are over in the simulator

    waiting = rollouts.check_rollouts(target_ids=list(targets.values()))

    assert list(waiting) == [targets["api"]]  # looked at again later
    assert RedeployTarget.objects.get(pk=targets["web"]).state == RedeployTarget.State.SUCCEEDED
    api = RedeployTarget.objects.get(pk=targets["api"])
    assert (api.state, api.message) == (RedeployTarget.State.ROLLING, "unforeseen (looking again)")


def test_a_run_leaves_a_target_another_run_claimed_and_never_undoes_its_verdict(
    requester, approved_ticket, binding, sim
):
    """Two runs of one task at once (a redelivery while the first still runs): neither may
    clear the other's claim, nor overwrite a verdict the other already wrote."""
    operation = request(requester)
    restarts._start(operation_ids=[operation.pk], task_id="run-a")
    target = operation.targets.get()
    claim = "2030-01-01T00:00:00Z"
    RedeployTarget.objects.filter(pk=target.pk).update(restarted_at=claim)  # run A's claim

    # Run B, which saw the target unclaimed, found no restart to apply.
    operations.fail_target(target.pk, message="b failed", task_id="run-b", keep_change=False)
    target.refresh_from_db()
    assert (target.state, target.restarted_at) == (RedeployTarget.State.PENDING, claim)

    # Run B judged A's claimed restart interrupted; A's PATCH lands afterwards.
    operations.fail_target(target.pk, message="interrupted", task_id="run-b", keep_change=True)
    applied = kube.Restart(restarted_at=claim, generation=2, resource_version="99")
    restarts._record_restarts(
        [restarts._Restarted(target_id=target.pk, restart=applied, progress_deadline_seconds=600)],
        task_id="run-a",
    )
    target.refresh_from_db()
    assert (target.state, target.message) == (RedeployTarget.State.FAILED, "interrupted")
    # ...but the audit trail says the restart was applied.
    assert AuditEvent.objects.filter(
        operation_id=operation.pk, action="redeploy.succeeded", celery_task_id="run-a"
    ).exists()


def test_a_batch_of_many_in_one_namespace_reads_them_with_one_list(
    requester, approver, application, binding, cluster, sim, settings
):
    settings.KUBERNETES_LIST_FROM = 2
    gone = ApplicationFactory(name="gone")  # bound, but its Deployment is not in the cluster
    BindingFactory(application=gone, cluster=cluster, namespace="shop", deployment_name="gone")
    TicketFactory(applicant=requester, applications=[application, gone], approved_by=approver)
    operations = redeploys.request_redeploys(
        user=requester,
        items=[
            redeploys.RedeployRequest(application_name=name, namespace="shop", deployment_name=name)
            for name in ("web", "gone")
        ],
    )
    sim.reset_requests()

    operations = restarts.run_redeploys(operation_ids=[o.pk for o in operations])

    reads = [(r.method, r.path) for r in sim.requests if r.method != "PATCH"]
    assert reads == [("GET", "/apis/apps/v1/namespaces/shop/deployments")]
    by_name = {operation.application_name: operation for operation in operations}
    assert follow(by_name["web"]).state == RedeployOperation.State.SUCCEEDED
    assert by_name["gone"].message == "Deployment does not exist"
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="gone")


def test_api_refusal_is_reported_with_its_message(
    requester, approved_ticket, binding, sim, redis_client
):
    sim.forbid("shop")
    operation = run(request(requester))

    assert operation.message == (
        'Operation failed err: deployments.apps "web" is forbidden: User "sim-user" cannot get '
        'resource "deployments" in API group "apps" in the namespace "shop"'
    )
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")


def test_transient_errors_are_retried_then_the_restart_succeeds(
    requester, approved_ticket, binding, sim
):
    sim.fail_next("GET", "/deployments/web$", status=500, times=1)
    sim.fail_next("PATCH", "/deployments/web$", status=500, times=1)
    sim.fail_next("PATCH", "/deployments/web$", status=429, times=1, retry_after=0)

    operation = run(request(requester))

    assert operation.targets.get().state == RedeployTarget.State.ROLLING
    assert len(patches(sim)) == 3
    assert sim.get_deployment("shop", "web")["metadata"]["generation"] == 2


def test_transient_errors_that_persist_fail_and_restore(
    requester, approved_ticket, binding, sim, redis_client
):
    ttl = redis_client.ttl(KEY)
    sim.fail_next("PATCH", "/deployments/web$", status=500, times=10)

    operation = run(request(requester))

    assert operation.message.startswith("Operation failed err: Internal error occurred:")
    assert len(patches(sim)) == 3
    assert_restored(redis_client, ttl)


def test_hanging_api_past_the_timeout_fails_the_operation(
    requester, approved_ticket, binding, sim, settings, redis_client
):
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.3
    sim.hang_next("GET", "/deployments/web$", seconds=2, times=10)

    operation = run(request(requester))

    assert operation.state == RedeployOperation.State.FAILED
    assert operation.message.startswith("Operation failed err: ")
    assert "Read timed out" in operation.message
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")


def test_a_restart_in_doubt_is_not_repeated_and_stays_consumed(
    requester, approved_ticket, binding, sim, settings, redis_client
):
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.2
    sim.hang_next("PATCH", "/deployments/web$", seconds=3, times=10)

    operation = run(request(requester))

    (target,) = operation.targets.all()
    assert operation.state == RedeployOperation.State.FAILED
    assert "it was not repeated" in target.message
    assert target.restarted_at  # it may have been applied
    assert redis_client.exists(KEY) == 0
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, False)


@pytest.mark.parametrize("status", [502, 503, 504, None], ids=["502", "503", "504", "dropped"])
def test_a_gateway_answer_to_every_patch_fails_in_doubt_and_keeps_the_grant_used(
    requester, approved_ticket, binding, sim, redis_client, status
):
    """502/503/504 or a dropped connection: the PATCH may have been applied. Read back, never a
    second restart, never the grant put back."""
    if status is None:
        sim.drop_next("PATCH", "/deployments/web$", times=10)
    else:
        sim.fail_next("PATCH", "/deployments/web$", status=status, times=10)

    operation = run(request(requester))

    (target,) = operation.targets.all()
    assert (operation.state, target.state) == ("FAILED", RedeployTarget.State.FAILED)
    assert target.message.endswith("(the restart may have been applied; it was not repeated)")
    assert target.restarted_at  # the claim is kept: perhaps applied
    assert {str(p.body) for p in patches(sim)} == {str(patches(sim)[0].body)}
    assert sim.get_deployment("shop", "web")["metadata"]["generation"] == 1
    assert redis_client.exists(KEY) == 0
    assert redis_client.exists(REDEPLOY_GRANTS.held_key(operation_id=operation.pk)) == 0
    assert "authorization.restored" not in audit_actions(operation=operation)
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, False)


@pytest.mark.parametrize("status", [502, 503, 504, None], ids=["502", "503", "504", "dropped"])
def test_a_patch_applied_behind_a_lost_answer_is_one_restart_followed_to_success(
    requester, approved_ticket, binding, sim, redis_client, status
):
    sim.answer_after_applying("PATCH", "/deployments/web$", status=status)

    operation = follow(run(request(requester)))

    assert operation.state == RedeployOperation.State.SUCCEEDED
    assert len(patches(sim)) == 1
    assert sim.get_deployment("shop", "web")["metadata"]["generation"] == 2
    assert redis_client.exists(KEY) == 0
    assert audit_actions(operation=operation).count("redeploy.succeeded") == 1


def test_a_task_run_twice_restarts_once(requester, approved_ticket, binding, sim):
    operation = request(requester)
    run(operation)
    again = run(operation, task_id="task-redelivered")

    assert len(patches(sim)) == 1
    assert again.targets.get().state == RedeployTarget.State.ROLLING
    assert audit_actions(action="authorization.consumed") == ["authorization.consumed"]


def test_redelivery_after_the_patch_was_sent_follows_the_rollout(
    requester, approved_ticket, binding, sim, cluster
):
    operation = run(request(requester))
    target = operation.targets.get()
    # As if the worker died right after the PATCH, before recording its answer.
    RedeployTarget.objects.filter(pk=target.pk).update(
        state=RedeployTarget.State.PENDING, generation=None
    )
    sim.reset_requests()

    operation = follow(run(operation, task_id="task-redelivered"))

    assert patches(sim) == []
    assert operation.state == RedeployOperation.State.SUCCEEDED


def test_redelivery_when_the_patch_is_not_visible_never_patches(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = request(requester)
    restarts._start(operation_ids=[operation.pk], task_id="task-1")
    # As if the worker died between recording restartedAt and sending the PATCH.
    RedeployTarget.objects.filter(operation=operation).update(restarted_at="2030-01-01T00:00:00Z")

    operation = run(operation, task_id="task-redelivered")

    assert patches(sim) == []
    target = operation.targets.get()
    assert target.state == RedeployTarget.State.FAILED
    assert "was interrupted" in target.message
    assert redis_client.exists(KEY) == 0


@contextlib.contextmanager
def run_on_its_way(target_id: int):
    """Another run, alive, between its claim of the target and the record of its outcome: a
    thread whose own database session holds the target in flight (redeploy.in_flight)."""
    held, done = threading.Event(), threading.Event()

    def claiming_run():
        try:
            in_flight.hold([target_id])
            held.set()
            done.wait(timeout=30)
            in_flight.release([target_id])  # its outcome recorded
        finally:
            connection.close()

    thread = threading.Thread(target=claiming_run)
    thread.start()
    assert held.wait(timeout=10), "the other run never held the target"
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)


@pytest.mark.django_db(transaction=True)  # the other run's session must see the target
def test_a_redelivery_leaves_a_restart_in_flight_to_the_run_sending_it(
    requester, approved_ticket, binding, sim, broker
):
    """Delivered again while the first run's PATCH is on its way: the redelivery neither fails
    the claimed target ("interrupted") nor patches. Once that run let go of the target (it
    recorded an outcome, or died with its session), the next look decides. (The broker only
    keeps the task that the request publishes: the runs here are the test's.)"""
    operation = request(requester)
    restarts._start(operation_ids=[operation.pk], task_id="task-1")
    target = operation.targets.get()
    claim = "2030-01-01T00:00:00Z"
    RedeployTarget.objects.filter(pk=target.pk).update(restarted_at=claim)

    with run_on_its_way(target.pk):
        run(operation, task_id="task-redelivered")
        target.refresh_from_db()
        assert (target.state, target.restarted_at) == (RedeployTarget.State.PENDING, claim)
        assert audit_actions(operation=operation).count("redeploy.failed") == 0

    target = run(operation, task_id="task-redelivered-again").targets.get()
    assert target.state == RedeployTarget.State.FAILED
    assert "was interrupted" in target.message
    assert patches(sim) == []


def test_a_worker_killed_after_the_start_loses_nothing(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = request(requester)
    # As if the worker died once the start committed, before any restart was claimed.
    restarts._start(operation_ids=[operation.pk], task_id="task-1")

    operation = follow(run(operation, task_id="task-redelivered"))

    assert operation.state == RedeployOperation.State.SUCCEEDED
    assert len(patches(sim)) == 1
    assert redis_client.exists(REDEPLOY_GRANTS.held_key(operation_id=operation.pk)) == 0
    assert approved_ticket.entries.get().state == TicketEntry.State.USED


def test_every_cluster_of_the_binding_is_a_target(
    requester, approved_ticket, application, binding, redis_client
):
    other = ClusterFactory(name="other", server="http://127.0.0.1:1", token="x")
    BindingFactory(application=application, cluster=other, namespace="shop", deployment_name="web")

    operation = follow(run(request(requester)))

    targets = {t.cluster_name: t for t in operation.targets.all()}
    assert targets["sim"].state == RedeployTarget.State.SUCCEEDED
    assert targets["other"].state == RedeployTarget.State.FAILED
    assert "Connection refused" in targets["other"].message
    assert operation.state == RedeployOperation.State.FAILED
    assert operation.message.startswith("other: Operation failed err:")
    assert redis_client.exists(KEY) == 0
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, False)


def test_a_named_cluster_restarts_only_there(requester, approved_ticket, application, binding, sim):
    other = ClusterFactory(name="other", server="http://127.0.0.1:1", token="x")
    BindingFactory(application=application, cluster=other, namespace="shop", deployment_name="web")

    operation = follow(run(request(requester, cluster_name="sim")))

    assert [t.cluster_name for t in operation.targets.all()] == ["sim"]
    assert operation.state == RedeployOperation.State.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_refusal_audit_is_committed(requester, binding):
    with pytest.raises(UnauthorizedAccess):
        request(requester)
    assert AuditEvent.objects.filter(action="redeploy.refused").count() == 1


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_redeploys_on_one_authorization_patch_once(
    requester, approved_ticket, binding, sim, redis_client
):
    barrier = threading.Barrier(50)
    accepted, refused, errors = [], [], []

    def redeploy():
        try:
            barrier.wait(timeout=10)
            accepted.append(request(requester))
        except UnauthorizedAccess as refusal:
            refused.append(refusal)
        except Exception as error:  # reported below; a thread must not die silently
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeploy) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert (len(accepted), len(refused)) == (1, 49)
    follow(run(accepted[0]))
    assert len(patches(sim)) == 1
    assert RedeployOperation.objects.count() == 1
    assert AuditEvent.objects.filter(action="authorization.consumed").count() == 1
    assert AuditEvent.objects.filter(action="redeploy.refused").count() == 49
