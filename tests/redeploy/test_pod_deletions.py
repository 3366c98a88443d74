"""The pod-delete services against real PostgreSQL, real Redis and the simulator over HTTP."""

import pytest

from cratos.audit.models import AuditEvent
from cratos.exceptions import PermissionRefused, ValidationFailed
from redeploy import (
    kube,
    pod_deletion_ends,
    pod_deletion_follows,
    pod_deletion_runs,
    pod_deletions,
    selectors,
)
from redeploy.models import PodDeletion, PodDeletionTarget
from redeploy.providers import DELETE_POD_GRANTS
from tests.factories import UserFactory
from tests.support import assert_grant_ttl, audit_actions
from tickets import grants
from tickets.grants import UnauthorizedAccess
from tickets.models import Ticket, TicketEntry

pytestmark = pytest.mark.django_db

KEY = "APPLICATION:DELETE:POD:TOKEN:USERNAME:alice:APPLICATION_NAME:web"


def pods_of(cluster, deployment="web") -> list[kube.PodInfo]:
    return kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name=deployment)


def request(user, pod_names, **overrides) -> PodDeletion:
    fields = {"application_name": "web", "namespace": "shop", "deployment_name": "web"}
    return pod_deletions.request_pod_deletion(
        user=user, pod_names=pod_names, request_ip="10.0.0.7", **(fields | overrides)
    )


def run(operation: PodDeletion, task_id: str = "task-1") -> PodDeletion:
    return pod_deletion_runs.run_pod_deletion(operation_id=operation.pk, task_id=task_id)


def follow(operation: PodDeletion) -> PodDeletion:
    """What the follow_pod_deletions task does, in this thread: watch until every target
    finished."""
    ids = list(operation.targets.values_list("pk", flat=True))
    following = pod_deletion_follows.follow_pod_deletions(target_ids=ids, task_id="watch")
    assert following is None, "the replacement was not decided in time"
    return PodDeletion.objects.get(pk=operation.pk)


def deletes(sim):
    return [r for r in sim.requests if r.method == "DELETE"]


def live_grant():
    return grants.live_grant(kind=DELETE_POD_GRANTS, username="alice", application_name="web")


def test_the_key_and_ttl_approval_writes(delete_pod_ticket, redis_client):
    assert live_grant() is not None
    assert 7190 <= redis_client.ttl(KEY) <= 7200


def test_one_pod_deleted_its_replacement_followed_the_grant_used(
    sim, cluster, binding, requester, delete_pod_ticket, redis_client
):
    victim = pods_of(cluster)[0]

    operation = request(requester, [victim.name])

    assert operation.state == PodDeletion.State.QUEUED
    assert operation.ticket_id == delete_pod_ticket.pk
    assert redis_client.get(KEY) is None  # taken by the request
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.IN_USE
    run(operation)
    (target,) = operation.targets.all()
    assert (target.state, target.deleted, target.pod_uid) == (
        PodDeletionTarget.State.DELETING,
        True,
        victim.uid,
    )
    assert len(deletes(sim)) == 1
    operation = follow(operation)
    assert operation.state == PodDeletion.State.SUCCEEDED
    target.refresh_from_db()
    assert (target.state, target.success) == (PodDeletionTarget.State.SUCCEEDED, True)
    pods = kube.pod_set(cluster=cluster, namespace="shop", deployment_name="web")
    assert pods.ready >= pods.desired == 2
    delete_pod_ticket.refresh_from_db()
    assert (delete_pod_ticket.state, delete_pod_ticket.success) == (Ticket.State.COMPLETED, True)
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.USED
    assert live_grant() is None
    actions = audit_actions(operation=operation)
    assert actions[0] == "pod_deletion.requested"
    assert "pod_deletion.started" in actions and actions[-1] == "pod_deletion.succeeded"


def test_several_pods_in_one_operation_one_approval(
    sim, cluster, binding, requester, delete_pod_ticket
):
    names = [pod.name for pod in pods_of(cluster)]

    operation = run(request(requester, names))

    assert sorted(t.pod_name for t in operation.targets.all()) == sorted(names)
    assert len(deletes(sim)) == 2
    assert follow(operation).state == PodDeletion.State.SUCCEEDED
    with pytest.raises(UnauthorizedAccess):  # one approval, one operation
        request(requester, [pods_of(cluster)[0].name])


def test_a_pod_that_does_not_exist_fails_without_a_delete_and_the_grant_comes_back(
    sim, cluster, binding, requester, delete_pod_ticket, redis_client
):
    ttl_before = redis_client.ttl(KEY)

    operation = run(request(requester, ["web-nope"]))

    (target,) = operation.targets.all()
    assert (target.state, target.message) == (
        PodDeletionTarget.State.FAILED,
        "The pod=web-nope resource does not exist",
    )
    assert operation.state == PodDeletion.State.FAILED
    assert deletes(sim) == []
    assert live_grant() is not None  # given back, with the TTL it had left
    assert_grant_ttl(redis_client, KEY, ttl_before)
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.AUTHORIZED


def test_a_pod_of_another_deployment_is_refused(
    sim, cluster, binding, requester, delete_pod_ticket, redis_client
):
    sim.add_deployment("shop", "api", replicas=1)
    foreign = pods_of(cluster, "api")[0]

    operation = run(request(requester, [foreign.name]))

    assert operation.targets.get().message == f"The pod={foreign.name} resource does not exist"
    assert deletes(sim) == []
    assert live_grant() is not None
    assert_grant_ttl(redis_client, KEY, 7200, elapsed=60)


def test_with_one_good_and_one_unknown_pod_the_applied_delete_uses_the_grant(
    sim, cluster, binding, requester, delete_pod_ticket
):
    victim = pods_of(cluster)[0]

    operation = follow(run(request(requester, [victim.name, "web-nope"])))

    assert operation.state == PodDeletion.State.FAILED
    assert len(deletes(sim)) == 1
    assert live_grant() is None
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.USED


def test_without_an_authorization_the_request_is_refused_and_audited(
    cluster, binding, requester, approved_ticket
):
    # A redeploy approval does not allow deleting pods.
    with pytest.raises(UnauthorizedAccess, match="Unauthorized access"):
        request(requester, ["web-1"])

    assert not PodDeletion.objects.exists()
    assert AuditEvent.objects.filter(
        action="pod_deletion.refused", message="Unauthorized access"
    ).exists()


def test_without_the_permission_the_request_is_refused(delete_pod_ticket):
    with pytest.raises(PermissionRefused):
        request(UserFactory(username="erin"), ["web-1"])
    assert AuditEvent.objects.filter(action="pod_deletion.refused", actor_username="erin").exists()


@pytest.mark.parametrize(
    "pod_names, message",
    [([], "Give at least one pod."), (["a", "a"], "A pod is named twice."), (["Bad_Name"], None)],
)
def test_invalid_requests_are_refused_before_the_grant(
    requester, delete_pod_ticket, pod_names, message
):
    with pytest.raises(ValidationFailed, match=message):
        request(requester, pod_names)
    assert live_grant() is not None


def test_a_redelivered_task_never_deletes_again(
    sim, cluster, binding, requester, delete_pod_ticket
):
    operation = request(requester, [pods_of(cluster)[0].name])

    run(operation)
    run(operation, task_id="task-2")

    assert len(deletes(sim)) == 1
    assert follow(operation).state == PodDeletion.State.SUCCEEDED


def test_a_claimed_target_of_a_run_that_died_is_looked_at_not_deleted_again(
    sim, cluster, binding, requester, delete_pod_ticket
):
    victim = pods_of(cluster)[0]
    operation = request(requester, [victim.name])
    pod_deletion_runs._start(operation_id=operation.pk, task_id="task-1")
    # The first run claimed the deletion and died before it knew whether the DELETE went.
    operation.targets.update(deleted=True, pod_uid=victim.uid)

    run(operation, task_id="task-2")

    assert deletes(sim) == []
    assert operation.targets.get().state == PodDeletionTarget.State.DELETING
    # The pod was never deleted: it is still there at the deadline, and the grant is used.
    operation.targets.update(deadline_at=operation.created_at)
    assert follow(operation).state == PodDeletion.State.FAILED
    assert live_grant() is None


def test_without_a_binding_the_targets_fail_and_the_grant_comes_back(
    cluster, application, requester, delete_pod_ticket, redis_client
):
    operation = run(request(requester, ["web-1"]))

    assert operation.targets.get().message == "The deployment=web resource does not exist"
    assert live_grant() is not None
    assert_grant_ttl(redis_client, KEY, 7200, elapsed=60)


def test_a_pod_delete_approval_is_offered_for_pods_not_for_a_redeploy(
    binding, requester, delete_pod_ticket
):
    assert selectors.redeploy_choices(user=requester) == []
    (choice,) = selectors.redeploy_choices(user=requester, kind=DELETE_POD_GRANTS)
    assert (choice.application_name, choice.ticket_no) == ("web", delete_pod_ticket.ticket_no)


def test_a_deletion_that_never_started_fails_and_gives_the_grant_back(
    cluster, binding, requester, delete_pod_ticket, redis_client
):
    operation = request(requester, ["web-1"])

    pod_deletion_ends.give_up(operation_id=operation.pk, message="The task queue is away")

    operation.refresh_from_db()
    assert (operation.state, operation.message) == (
        PodDeletion.State.FAILED,
        "The task queue is away",
    )
    assert live_grant() is not None
    assert_grant_ttl(redis_client, KEY, 7200, elapsed=60)
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.AUTHORIZED
    assert audit_actions(operation=operation)[-2:] == [
        "pod_deletion.failed",
        "authorization.restored",
    ]


@pytest.mark.parametrize("status", [502, 503, 504, None], ids=["502", "503", "504", "dropped"])
def test_a_gateway_answer_to_every_delete_is_in_doubt_never_given_back(
    sim, cluster, binding, requester, delete_pod_ticket, redis_client, status
):
    victim = pods_of(cluster)[0]
    if status is None:
        sim.drop_next("DELETE", "/pods/", times=10)
    else:
        sim.fail_next("DELETE", "/pods/", status=status, times=10)

    operation = run(request(requester, [victim.name]))

    target = operation.targets.get()
    assert (target.state, target.deleted) == (PodDeletionTarget.State.DELETING, True)
    assert sim.pod_deletions == []
    # Not applied after all: the pod is still there at the deadline; the grant stays used.
    operation.targets.update(deadline_at=operation.created_at)
    assert follow(operation).state == PodDeletion.State.FAILED
    assert live_grant() is None
    assert redis_client.exists(DELETE_POD_GRANTS.held_key(operation_id=operation.pk)) == 0
    assert "authorization.restored" not in audit_actions(operation=operation)
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.USED


def test_a_delete_in_doubt_is_followed_not_given_back(
    sim, cluster, binding, requester, delete_pod_ticket
):
    victim = pods_of(cluster)[0]
    # Every attempt times out (1 s) before the API answers: the DELETE may have been applied.
    sim.hang_next("DELETE", "/pods/", seconds=1.5, times=3)

    operation = run(request(requester, [victim.name]))

    target = operation.targets.get()
    assert (target.state, target.deleted) == (PodDeletionTarget.State.DELETING, True)
    assert follow(operation).state == PodDeletion.State.SUCCEEDED
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.USED
