"""Following rollouts by watching (redeploy/rollouts.py, redeploy/kube/watch.py) against the
simulator over HTTP: one watch per namespace resumed by resourceVersion, bounded per task, a
LIST when the API answers 410 Gone."""

import time
import urllib.request

import pytest

from redeploy import redeploys, restarts, rollouts
from redeploy.models import RedeployOperation, RedeployTarget
from tests.factories import ApplicationFactory, BindingFactory, TicketFactory
from tests.redeploy.conftest import SIM_TOKEN

pytestmark = pytest.mark.django_db

State = RedeployTarget.State


def redeploy(user, name: str = "web") -> RedeployTarget:
    """A redeploy requested and its restart applied: its target, rolling."""
    operation = redeploys.request_redeploy(
        user=user, application_name=name, namespace="shop", deployment_name=name
    )
    restarts.run_redeploys(operation_ids=[operation.pk])
    target = RedeployTarget.objects.get(operation=operation)
    assert target.state == State.ROLLING
    return target


def api_calls(sim, since: int = 0) -> list[str]:
    """The requests after the `since`-th one: a watch as WATCH, a LIST as LIST."""
    calls = []
    for request in sim.requests[since:]:
        if request.query.get("watch") == "true":
            calls.append("WATCH")
        elif request.method == "GET" and request.path.endswith("/deployments"):
            calls.append("LIST")
        else:
            calls.append(request.method)
    return calls


def test_a_rollout_is_followed_by_one_list_then_one_watch(requester, approved_ticket, binding, sim):
    target = redeploy(requester)
    before = len(sim.requests)

    assert rollouts.follow_rollouts(target_ids=[target.pk]) is None

    target.refresh_from_db()
    assert (target.state, target.success) == (State.SUCCEEDED, True)
    assert target.message == 'deployment "web" successfully rolled out'
    assert target.operation.state == RedeployOperation.State.SUCCEEDED
    assert api_calls(sim, before) == ["LIST", "WATCH"]
    listed, watch = sim.requests[before:]
    assert listed.query["fieldSelector"] == watch.query["fieldSelector"] == "metadata.name=web"
    assert watch.path == "/apis/apps/v1/namespaces/shop/deployments"
    assert int(watch.query["resourceVersion"]) >= int(target.resource_version)  # the list's
    assert watch.query["allowWatchBookmarks"] == "true"


def test_a_rollout_already_over_when_listed_needs_no_watch(
    requester, approved_ticket, binding, sim
):
    target = redeploy(requester)
    time.sleep(0.5)  # the rollout is over
    before = len(sim.requests)

    assert rollouts.follow_rollouts(target_ids=[target.pk]) is None

    assert RedeployTarget.objects.get(pk=target.pk).state == State.SUCCEEDED
    assert api_calls(sim, before) == ["LIST"]


def test_a_task_watches_for_a_bounded_time_and_the_next_resumes_after_a_bookmark(
    requester, approved_ticket, binding, sim, settings
):
    settings.REDEPLOY_ROLLOUT_WATCH_SECONDS = 1
    sim.bookmark_seconds = 0.3
    sim.stall("shop", "web")  # rolls no further until released
    target = redeploy(requester)

    started = time.monotonic()
    following = rollouts.follow_rollouts(target_ids=[target.pk])

    assert time.monotonic() - started < 3
    assert following.target_ids == [target.pk]
    assert following.delay == 0
    ((cluster, namespace, version),) = following.resume
    assert (cluster, namespace) == ("sim", "shop")
    assert int(version) > int(target.resource_version)  # where the watch stood, not the PATCH
    before = len(sim.requests)
    sim.stall("shop", "web", stalled=False)

    assert rollouts.follow_rollouts(target_ids=[target.pk], resume=following.resume) is None

    assert RedeployTarget.objects.get(pk=target.pk).state == State.SUCCEEDED
    assert api_calls(sim, before) == ["WATCH"]
    assert sim.requests[before].query["resourceVersion"] == version


def test_an_expired_resource_version_is_listed_again_then_watched_from_the_list(
    requester, approved_ticket, binding, sim
):
    target = redeploy(requester)
    time.sleep(0.5)  # the rollout is over
    sim.compact()  # and the history after the PATCH is gone: 410 Gone
    before = len(sim.requests)
    resume = [["sim", "shop", target.resource_version]]  # as a task before might have left it

    assert rollouts.follow_rollouts(target_ids=[target.pk], resume=resume) is None

    assert RedeployTarget.objects.get(pk=target.pk).state == State.SUCCEEDED
    assert api_calls(sim, before) == ["WATCH", "LIST"]


def test_a_batch_in_one_namespace_is_listed_once_and_watched_once(
    requester, approver, binding, sim
):
    api = ApplicationFactory(name="api")
    sim.add_deployment("shop", "api", replicas=3)
    BindingFactory(
        application=api, cluster=binding.cluster, namespace="shop", deployment_name="api"
    )
    TicketFactory(
        applicant=requester, applications=[binding.application, api], approved_by=approver
    )
    targets = [redeploy(requester, "web"), redeploy(requester, "api")]
    before = len(sim.requests)

    assert rollouts.follow_rollouts(target_ids=[t.pk for t in targets]) is None

    assert set(RedeployTarget.objects.values_list("state", flat=True)) == {State.SUCCEEDED}
    assert api_calls(sim, before) == ["LIST", "WATCH"]
    assert "fieldSelector" not in sim.requests[before].query  # the namespace's Deployments


def test_a_failing_watch_is_shown_and_resumed_later(
    requester, approved_ticket, binding, sim, settings
):
    target = redeploy(requester)
    resume = [["sim", "shop", target.resource_version]]  # no LIST first: the watch fails
    sim.fail_next("GET", "/namespaces/shop/deployments$", status=503, times=1)

    following = rollouts.follow_rollouts(target_ids=[target.pk], resume=resume)

    assert following.target_ids == [target.pk]
    assert following.delay == settings.REDEPLOY_ROLLOUT_POLL_SECONDS
    assert following.resume == resume
    target.refresh_from_db()
    assert target.state == State.ROLLING
    assert target.message.endswith("(looking again)")

    assert rollouts.follow_rollouts(target_ids=[target.pk], resume=following.resume) is None
    assert RedeployTarget.objects.get(pk=target.pk).state == State.SUCCEEDED


def test_a_rollout_past_its_progress_deadline_fails_as_the_controller_says(
    requester, approved_ticket, application, cluster, sim
):
    sim.add_deployment("shop", "web", replicas=2, progress_deadline_seconds=1)
    BindingFactory(
        application=application, cluster=cluster, namespace="shop", deployment_name="web"
    )
    sim.stall("shop", "web")
    target = redeploy(requester)

    assert rollouts.follow_rollouts(target_ids=[target.pk]) is None

    target.refresh_from_db()
    assert (target.state, target.success) == (State.FAILED, False)
    assert target.message == 'deployment "web" exceeded its progress deadline'


def test_a_deployment_deleted_while_watched_fails_its_target(
    requester, approved_ticket, binding, sim
):
    sim.stall("shop", "web")
    target = redeploy(requester)
    urllib.request.urlopen(
        urllib.request.Request(
            f"{sim.url}/apis/apps/v1/namespaces/shop/deployments/web",
            method="DELETE",
            headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        )
    )

    assert rollouts.follow_rollouts(target_ids=[target.pk]) is None

    target.refresh_from_db()
    assert target.state == State.FAILED
    assert target.message == "The deployment=web resource does not exist"
