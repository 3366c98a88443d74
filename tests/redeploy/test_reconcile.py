"""The reconciler settles operations left QUEUED or RUNNING, from the cluster's truth: real
PostgreSQL and Redis, the simulator over HTTP. An operation is put in the state a fault leaves
it in (a claim committed, the PATCH applied or not, the record lost), then aged past
OPERATION_STUCK_AFTER_SECONDS."""

import dataclasses
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from cratos import settings as product_settings
from redeploy import (
    kube,
    pod_deletion_follows,
    pod_deletion_runs,
    pod_deletions,
    reconcile,
    redeploys,
    tasks,
)
from redeploy.models import PodDeletion, PodDeletionTarget, RedeployOperation, RedeployTarget
from redeploy.providers import DELETE_POD_GRANTS, REDEPLOY_GRANTS
from tests.factories import ApplicationFactory, TicketFactory
from tests.support import assert_grant_ttl, audit_actions, check_rollout
from tickets import grants, sweeps
from tickets.models import Ticket, TicketEntry

pytestmark = pytest.mark.django_db

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
POD_KEY = "APPLICATION:DELETE:POD:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@pytest.fixture(autouse=True)
def stuck_after(settings):
    settings.OPERATION_STUCK_AFTER_SECONDS = 600
    return settings


def request(user) -> RedeployOperation:
    return redeploys.request_redeploy(
        user=user, application_name="web", namespace="shop", deployment_name="web"
    )


def aged(operation, *, running: bool):
    """The operation as a fault leaves it, long ago: RUNNING (started) or still QUEUED."""
    long_ago = timezone.now() - timedelta(seconds=601)
    fields = {"created_at": long_ago}
    if running:
        fields |= {"state": "RUNNING", "started_at": long_ago, "celery_task_id": "task-lost"}
    type(operation).objects.filter(pk=operation.pk).update(**fields)
    operation.refresh_from_db()
    return operation


def claimed_target(operation, binding, *, restarted_at: str = "") -> RedeployTarget:
    return RedeployTarget.objects.create(
        operation=operation,
        ticket_id=operation.ticket_id,
        binding=binding,
        cluster_name=binding.cluster.name,
        namespace="shop",
        deployment_name="web",
        restarted_at=restarted_at,
    )


def patches(sim) -> list:
    return [r for r in sim.requests if r.method == "PATCH"]


def generation(sim) -> int:
    return sim.get_deployment("shop", "web")["metadata"]["generation"]


def settle() -> reconcile.Settled:
    return reconcile.settle_stuck_operations(task_id="reconciler")


def follow_to_the_end(target_ids: list[int], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    for target_id in target_ids:
        while (delay := check_rollout(target_id)) is not None:
            assert time.monotonic() < deadline, "the rollout was not decided in time"
            time.sleep(delay)


# -- redeploys ------------------------------------------------------------------------------


def test_a_redeploy_queued_too_long_fails_and_gives_its_grant_back(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = request(requester)
    remaining = redis_client.ttl(REDEPLOY_GRANTS.held_key(operation_id=operation.pk))
    aged(operation, running=False)

    settle()

    operation.refresh_from_db()
    assert (operation.state, operation.message) == ("FAILED", reconcile.NEVER_STARTED)
    assert sim.requests == []
    assert_grant_ttl(redis_client, KEY, remaining)
    assert approved_ticket.entries.get().state == TicketEntry.State.AUTHORIZED
    assert audit_actions(operation=operation)[-2:] == ["redeploy.failed", "authorization.restored"]


def test_one_operation_that_cannot_be_settled_never_holds_the_others_up(
    requester, approver, approved_ticket, binding, sim, redis_client, monkeypatch
):
    TicketFactory(
        applicant=requester, applications=[ApplicationFactory(name="api")], approved_by=approver
    )
    first = aged(request(requester), running=False)
    second = aged(
        redeploys.request_redeploy(
            user=requester, application_name="api", namespace="shop", deployment_name="api"
        ),
        running=False,
    )

    def broken_for_the_first(*, operation_id, **kwargs):
        if operation_id == first.pk:
            raise RuntimeError("a bug")
        reconcile.give_up(operation_id=operation_id, **kwargs)

    broken = dataclasses.replace(reconcile.REDEPLOYS, give_up=broken_for_the_first)
    monkeypatch.setattr(reconcile, "REDEPLOYS", broken)
    settle()

    assert RedeployOperation.objects.get(pk=first.pk).state == "QUEUED"
    assert RedeployOperation.objects.get(pk=second.pk).state == "FAILED"
    monkeypatch.undo()
    settle()  # the next run
    assert RedeployOperation.objects.get(pk=first.pk).state == "FAILED"


def test_an_operation_not_stuck_yet_is_left_to_its_task(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = request(requester)

    assert settle() == reconcile.Settled()

    operation.refresh_from_db()
    assert operation.state == "QUEUED"
    assert redis_client.exists(REDEPLOY_GRANTS.held_key(operation_id=operation.pk)) == 1


def test_a_restart_applied_but_never_recorded_is_recorded_and_its_rollout_followed(
    requester, approved_ticket, binding, sim, redis_client
):
    """The database went away after the PATCH and before the record: the Deployment carries
    the claimed restartedAt, so the restart happened."""
    operation = aged(request(requester), running=True)
    claim = kube.now_restarted_at()
    target = claimed_target(operation, binding, restarted_at=claim)
    kube.restart_deployment(
        cluster=binding.cluster, namespace="shop", name="web", restarted_at=claim
    )
    sim.reset_requests()

    settled = settle()

    assert settled.rollouts == [target.pk]
    target.refresh_from_db()
    assert (target.state, target.generation) == (RedeployTarget.State.ROLLING, 2)
    follow_to_the_end(settled.rollouts)
    operation.refresh_from_db()
    assert operation.state == "SUCCEEDED"
    assert patches(sim) == []  # looked at, never restarted again
    assert generation(sim) == 2
    assert redis_client.exists(KEY) == 0
    assert redis_client.exists(REDEPLOY_GRANTS.held_key(operation_id=operation.pk)) == 0
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, True)
    actions = audit_actions(operation=operation)
    assert actions.count("redeploy.succeeded") == 1
    assert actions[-1] == "rollout.complete"


def test_a_claimed_restart_that_never_landed_fails_and_gives_the_grant_back(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = request(requester)
    remaining = redis_client.ttl(REDEPLOY_GRANTS.held_key(operation_id=operation.pk))
    operation = aged(operation, running=True)
    target = claimed_target(operation, binding, restarted_at=kube.now_restarted_at())

    assert settle() == reconcile.Settled()

    operation.refresh_from_db()
    target.refresh_from_db()
    assert operation.state == "FAILED"
    assert (target.state, target.restarted_at) == (RedeployTarget.State.FAILED, "")
    assert "never reached the Deployment; nothing was applied" in target.message
    assert patches(sim) == []
    assert generation(sim) == 1
    assert_grant_ttl(redis_client, KEY, remaining)
    assert approved_ticket.entries.get().state == TicketEntry.State.AUTHORIZED


def test_a_later_restart_by_someone_else_keeps_ours_as_perhaps_applied(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = aged(request(requester), running=True)
    target = claimed_target(operation, binding, restarted_at="2020-01-01T00:00:00Z")
    kube.restart_deployment(
        cluster=binding.cluster, namespace="shop", name="web", restarted_at=kube.now_restarted_at()
    )

    settle()

    target.refresh_from_db()
    assert (target.state, target.restarted_at) == (
        RedeployTarget.State.FAILED,
        "2020-01-01T00:00:00Z",
    )
    assert "it was not repeated" in target.message
    assert redis_client.exists(KEY) == 0  # perhaps applied: the grant is used
    assert approved_ticket.entries.get().state == TicketEntry.State.USED


def test_an_earlier_restart_written_with_another_offset_means_ours_never_landed(
    requester, approved_ticket, binding, sim, redis_client
):
    # kubectl writes restartedAt in its own time zone: 08:00+01:00 is 07:00Z, before ours.
    kube.restart_deployment(
        cluster=binding.cluster,
        namespace="shop",
        name="web",
        restarted_at="2026-01-05T08:00:00+01:00",
    )
    operation = aged(request(requester), running=True)
    target = claimed_target(operation, binding, restarted_at="2026-01-05T07:30:00Z")

    settle()

    target.refresh_from_db()
    assert (target.state, target.restarted_at) == (RedeployTarget.State.FAILED, "")
    assert redis_client.exists(KEY) == 1  # given back
    assert approved_ticket.entries.get().state == TicketEntry.State.AUTHORIZED


def test_a_target_never_claimed_fails_without_a_request(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = request(requester)
    remaining = redis_client.ttl(REDEPLOY_GRANTS.held_key(operation_id=operation.pk))
    operation = aged(operation, running=True)
    claimed_target(operation, binding)

    settle()

    operation.refresh_from_db()
    assert (operation.state, operation.message) == ("FAILED", reconcile.NEVER_SENT)
    assert sim.requests == []
    assert_grant_ttl(redis_client, KEY, remaining)


def test_the_api_away_leaves_a_claimed_restart_for_the_next_run(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = aged(request(requester), running=True)
    claim = kube.now_restarted_at()
    target = claimed_target(operation, binding, restarted_at=claim)
    kube.restart_deployment(
        cluster=binding.cluster, namespace="shop", name="web", restarted_at=claim
    )
    sim.fail_next("GET", "/deployments/web$", status=503, times=3)

    settle()

    target.refresh_from_db()
    assert target.state == RedeployTarget.State.PENDING
    assert settle().rollouts == [target.pk]  # the next run finds it applied


def test_a_rollout_whose_follower_was_lost_is_decided_past_its_deadline(
    requester, approved_ticket, binding, sim, redis_client
):
    operation = redeploys.request_redeploy(
        user=requester, application_name="web", namespace="shop", deployment_name="web"
    )
    tasks.run_redeploys.apply(kwargs={"operation_ids": [str(operation.pk)]}, task_id="t")
    # The follow-up task was never delivered; meanwhile the rollout finished.
    target = RedeployTarget.objects.get(operation=operation)
    RedeployTarget.objects.filter(pk=target.pk).update(deadline_at=timezone.now())
    time.sleep(1)

    settle()

    operation.refresh_from_db()
    assert operation.state == "SUCCEEDED"
    assert audit_actions(operation=operation).count("rollout.complete") == 1


def test_a_stuck_operations_ticket_reaches_a_final_state_with_the_expiry_sweep(
    requester, approved_ticket, binding, sim, redis_client
):
    """The expiry sweep leaves an entry IN_USE to its operation; once the reconciler settled
    a stuck one that applied nothing, the sweep expires the entry and the ticket completes."""
    operation = aged(request(requester), running=True)
    claimed_target(operation, binding)
    long_ago = timezone.now() - timedelta(hours=3)
    TicketEntry.objects.filter(ticket=approved_ticket).update(authorization_expires_at=long_ago)
    assert sweeps.expire_unused_authorizations() == 0  # IN_USE: left to the operation

    settle()

    assert sweeps.expire_unused_authorizations() == 1
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, False)
    assert approved_ticket.entries.get().state == TicketEntry.State.EXPIRED


# -- grants held for operations that were never committed ----------------------------------


def test_a_grant_held_for_an_operation_never_committed_goes_back_after_the_grace(
    requester, approved_ticket, binding, redis_client
):
    """The web process died between taking the grant and committing its operation."""
    ghost = uuid.uuid4()
    remaining = redis_client.ttl(KEY)
    (taken,) = grants.take_all(kind=REDEPLOY_GRANTS, username="alice", wanted=[("web", ghost)])
    assert taken is not None
    held = REDEPLOY_GRANTS.held_key(operation_id=ghost)

    settle()  # first seen: a request may still be committing

    assert redis_client.exists(held) == 1
    assert redis_client.exists(KEY) == 0
    marker = REDEPLOY_GRANTS.unclaimed_marker
    redis_client.hset(marker, str(ghost), time.time() - 601)

    settle()

    assert redis_client.exists(held) == 0
    assert_grant_ttl(redis_client, KEY, remaining)
    assert redis_client.hlen(marker) == 0
    restored = audit_actions(operation_id=ghost)
    assert restored == ["authorization.restored"]


def test_a_grant_held_by_a_committed_operation_is_never_given_back(
    requester, approved_ticket, binding, redis_client
):
    operation = request(requester)
    held = REDEPLOY_GRANTS.held_key(operation_id=operation.pk)

    settle()
    redis_client.hset(REDEPLOY_GRANTS.unclaimed_marker, str(operation.pk), time.time() - 601)
    settle()

    assert redis_client.exists(held) == 1
    assert redis_client.exists(KEY) == 0


def test_an_unclaimed_grant_of_a_revoked_entry_is_dropped_not_put_back(
    requester, approved_ticket, binding, redis_client
):
    ghost = uuid.uuid4()
    grants.take_all(kind=REDEPLOY_GRANTS, username="alice", wanted=[("web", ghost)])
    TicketEntry.objects.filter(ticket=approved_ticket).update(state=TicketEntry.State.REVOKED)
    settle()
    redis_client.hset(REDEPLOY_GRANTS.unclaimed_marker, str(ghost), time.time() - 601)

    settle()

    assert redis_client.exists(REDEPLOY_GRANTS.held_key(operation_id=ghost)) == 0
    assert redis_client.exists(KEY) == 0


# -- pod deletions -----------------------------------------------------------------------------


def request_pod_deletion(user, cluster) -> PodDeletion:
    victim = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")[0]
    return pod_deletions.request_pod_deletion(
        user=user,
        application_name="web",
        namespace="shop",
        deployment_name="web",
        pod_names=[victim.name],
        request_ip="10.0.0.7",
    )


def claimed_pod(operation: PodDeletion, cluster) -> PodDeletionTarget:
    (pod,) = kube.pick_pods(
        kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web"),
        operation.pod_names,
    )
    return PodDeletionTarget.objects.create(
        operation=operation,
        ticket_id=operation.ticket_id,
        cluster_name=cluster.name,
        namespace="shop",
        deployment_name="web",
        pod_name=pod.name,
        pod_uid=pod.uid,
        deleted=True,
        operated_at=timezone.now(),
    )


def test_a_pod_deletion_queued_too_long_fails_and_gives_its_grant_back(
    requester, delete_pod_ticket, binding, cluster, sim, redis_client
):
    operation = request_pod_deletion(requester, cluster)
    remaining = redis_client.ttl(DELETE_POD_GRANTS.held_key(operation_id=operation.pk))
    aged(operation, running=False)
    sim.reset_requests()

    settle()

    operation.refresh_from_db()
    assert (operation.state, operation.message) == ("FAILED", reconcile.NEVER_STARTED)
    assert sim.requests == []
    assert_grant_ttl(redis_client, POD_KEY, remaining)


def test_a_claimed_pod_deletion_that_was_applied_is_followed_to_success(
    requester, delete_pod_ticket, binding, cluster, sim, redis_client
):
    operation = aged(request_pod_deletion(requester, cluster), running=True)
    target = claimed_pod(operation, cluster)
    sim.delete_pod("shop", target.pod_name, grace_period_seconds=0)
    sim.reset_requests()

    settled = settle()

    assert settled.pod_deletions == [target.pk]
    assert pod_deletion_follows.follow_pod_deletions(target_ids=settled.pod_deletions) is None
    operation.refresh_from_db()
    assert operation.state == "SUCCEEDED"
    assert [r for r in sim.requests if r.method == "DELETE"] == []  # never deleted again
    assert redis_client.exists(POD_KEY) == 0
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.USED


def test_a_claimed_pod_deletion_that_never_reached_the_pod_fails_and_gives_back(
    requester, delete_pod_ticket, binding, cluster, sim, redis_client
):
    operation = request_pod_deletion(requester, cluster)
    remaining = redis_client.ttl(DELETE_POD_GRANTS.held_key(operation_id=operation.pk))
    operation = aged(operation, running=True)
    target = claimed_pod(operation, cluster)

    settle()

    target.refresh_from_db()
    operation.refresh_from_db()
    assert (target.state, target.deleted) == (PodDeletionTarget.State.FAILED, False)
    assert "never reached it; nothing was applied" in target.message
    assert operation.state == "FAILED"
    assert sim.pod_deletions == []
    assert_grant_ttl(redis_client, POD_KEY, remaining)
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.AUTHORIZED


# -- what is told -------------------------------------------------------------------------------


def test_readyz_and_the_admin_index_count_unsettled_operations(
    client, admin_user, requester, approved_ticket, binding
):
    aged(request(requester), running=False)

    body = client.get("/readyz").json()

    assert body["counts"]["operations"] == {
        "redeploys": 1,
        "redeploysStuck": 1,
        "podDeletions": 0,
        "podDeletionsStuck": 0,
    }
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert 'id="unsettled-operations"' in page
    assert '<td class="unsettled">1</td>' in page
    assert '<td class="stuck">1</td>' in page


def test_the_reconciler_runs_every_minute_after_redelivery_had_its_chance():
    entry = product_settings.CELERY_BEAT_SCHEDULE["settle-stuck-operations"]
    assert entry["task"] == tasks.SETTLE_STUCK_OPERATIONS == tasks.settle_stuck_operations.name
    assert entry["schedule"] == 60.0
    visibility = product_settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility < product_settings.OPERATION_STUCK_AFTER_SECONDS


def test_a_pod_target_never_claimed_fails_unless_a_run_claimed_it_meanwhile(
    requester, delete_pod_ticket, binding, cluster, sim, redis_client
):
    operation = request_pod_deletion(requester, cluster)
    remaining = redis_client.ttl(DELETE_POD_GRANTS.held_key(operation_id=operation.pk))
    operation = aged(operation, running=True)
    target = claimed_pod(operation, cluster)
    # A redelivered task claimed it between the reconciler's read and its write:
    pod_deletion_runs.fail_unsent(target.pk, message=reconcile.NEVER_SENT, task_id="r")
    target.refresh_from_db()
    assert (target.state, target.deleted) == (PodDeletionTarget.State.PENDING, True)

    PodDeletionTarget.objects.filter(pk=target.pk).update(deleted=False)
    settle()

    target.refresh_from_db()
    assert (target.state, target.message) == (PodDeletionTarget.State.FAILED, reconcile.NEVER_SENT)
    assert sim.pod_deletions == []
    assert_grant_ttl(redis_client, POD_KEY, remaining)
