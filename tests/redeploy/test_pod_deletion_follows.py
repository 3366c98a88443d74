"""Following pod deletions by watching (redeploy/pod_deletion_follows.py, through
redeploy/following.py) against the simulator over HTTP: a LIST of the Deployment's pods, then
one watch of them, bounded per task, a LIST again when the API answers 410 Gone."""

import threading
import time
from datetime import timedelta

import pytest

from redeploy import pod_deletion_follows
from redeploy.models import PodDeletion, PodDeletionTarget
from tests.redeploy.test_pod_deletions import pods_of, request, run

pytestmark = pytest.mark.django_db

State = PodDeletionTarget.State
# The API requests one pod deletion's polling made per look, before it was followed by
# watching: pods_ready (a GET and two LISTs) and deployment_pods (the same again).
POLLED_REQUESTS_PER_LOOK = 6


def deleting(sim, cluster, user) -> PodDeletionTarget:
    """A pod deletion requested and its DELETE applied: its target, DELETING."""
    victim = pods_of(cluster)[0]
    (target,) = run(request(user, [victim.name])).targets.all()
    assert target.state == State.DELETING
    return target


def api_calls(sim, since: int) -> list[str]:
    """The requests after the `since`-th one: a watch as WATCH, else method and resource."""
    calls = []
    for sent in sim.requests[since:]:
        # .../deployments/web (a GET of one) or .../pods (a LIST or a watch of them)
        resource = sent.path.rsplit("/", 2)[-2 if sent.path.endswith("/web") else -1]
        verb = "WATCH" if sent.query.get("watch") == "true" else sent.method
        calls.append(f"{verb} {resource}")
    return calls


def test_a_deletion_is_followed_by_one_list_then_one_watch_of_the_pods(
    sim, cluster, binding, requester, delete_pod_ticket
):
    sim.replacement_ready_seconds = 0.5
    target = deleting(sim, cluster, requester)
    before = len(sim.requests)

    assert pod_deletion_follows.follow_pod_deletions(target_ids=[target.pk]) is None

    target.refresh_from_db()
    assert (target.state, target.success) == (State.SUCCEEDED, True)
    assert target.message == f"Pod {target.pod_name} deleted; its replacement is Ready"
    assert target.operation.state == PodDeletion.State.SUCCEEDED
    calls = api_calls(sim, before)
    assert calls == ["GET deployments", "GET pods", "GET replicasets", "WATCH pods"]
    watch = sim.requests[-1]
    assert watch.query["labelSelector"] == "app.kubernetes.io/name=web"
    assert watch.query["allowWatchBookmarks"] == "true"
    # Polled every 2 s, the half-second replacement cost at least one look (often more).
    assert len(calls) < POLLED_REQUESTS_PER_LOOK


def test_a_task_watches_for_a_bounded_time_and_the_next_lists_again(
    sim, cluster, binding, requester, delete_pod_ticket, settings
):
    settings.REDEPLOY_ROLLOUT_WATCH_SECONDS = 1
    sim.replacement_ready_seconds = 1.5  # Ready only once the first task is over
    target = deleting(sim, cluster, requester)

    started = time.monotonic()
    following = pod_deletion_follows.follow_pod_deletions(target_ids=[target.pk])

    assert time.monotonic() - started < 3
    # A pod's change says nothing of the others: no watch is resumed without a LIST first.
    assert (following.target_ids, following.resume, following.delay) == ([target.pk], [], 0)
    assert PodDeletionTarget.objects.get(pk=target.pk).state == State.DELETING
    before = len(sim.requests)

    assert pod_deletion_follows.follow_pod_deletions(target_ids=[target.pk]) is None

    assert PodDeletionTarget.objects.get(pk=target.pk).state == State.SUCCEEDED
    assert api_calls(sim, before) == [
        "GET deployments",
        "GET pods",
        "GET replicasets",
        "WATCH pods",
    ]


def test_an_expired_watch_is_listed_again_then_watched_from_the_list(
    sim, cluster, binding, requester, delete_pod_ticket
):
    sim.replacement_ready_seconds = 1.0
    target = deleting(sim, cluster, requester)
    other = next(p for p in sim.list_pods("shop") if p["metadata"]["name"] != target.pod_name)

    def compact_past_the_watch():
        # A change the watch has not read yet, then its history gone: 410 Gone.
        with sim._cond:
            sim.set_restarts("shop", other["metadata"]["name"], 1)
            sim.compact()

    timer = threading.Timer(0.4, compact_past_the_watch)
    timer.start()
    before = len(sim.requests)
    try:
        assert pod_deletion_follows.follow_pod_deletions(target_ids=[target.pk]) is None
    finally:
        timer.cancel()

    assert PodDeletionTarget.objects.get(pk=target.pk).state == State.SUCCEEDED
    listing = ["GET deployments", "GET pods", "GET replicasets"]
    assert api_calls(sim, before) == [*listing, "WATCH pods", *listing, "WATCH pods"]
    first, second = (r for r in sim.requests[before:] if r.query.get("watch") == "true")
    assert int(second.query["resourceVersion"]) > int(first.query["resourceVersion"])


def test_a_list_that_fails_for_a_while_is_followed_again_later(
    sim, cluster, binding, requester, delete_pod_ticket, settings
):
    sim.replacement_ready_seconds = 0.5
    target = deleting(sim, cluster, requester)
    attempts = settings.KUBERNETES_RETRY_ATTEMPTS
    sim.fail_next("GET", "/namespaces/shop/pods$", status=503, times=attempts)

    following = pod_deletion_follows.follow_pod_deletions(target_ids=[target.pk])

    # Nothing to watch from: the next task, after a pause, lists again.
    assert following.target_ids == [target.pk]
    assert following.delay == settings.REDEPLOY_ROLLOUT_POLL_SECONDS
    assert PodDeletionTarget.objects.get(pk=target.pk).state == State.DELETING
    time.sleep(0.5)

    assert pod_deletion_follows.follow_pod_deletions(target_ids=[target.pk]) is None
    assert PodDeletionTarget.objects.get(pk=target.pk).state == State.SUCCEEDED


def test_a_replacement_not_ready_by_the_deadline_fails_while_watched(
    sim, cluster, binding, requester, delete_pod_ticket
):
    sim.replacement_ready_seconds = 60
    target = deleting(sim, cluster, requester)
    PodDeletionTarget.objects.filter(pk=target.pk).update(
        deadline_at=target.operated_at + timedelta(seconds=1)
    )
    started = time.monotonic()

    assert pod_deletion_follows.follow_pod_deletions(target_ids=[target.pk]) is None

    assert time.monotonic() - started < 4
    target.refresh_from_db()
    assert (target.state, target.success) == (State.FAILED, False)
    assert "the replacement was not Ready within the progress deadline (1/2 pods Ready)" in (
        target.message
    )
