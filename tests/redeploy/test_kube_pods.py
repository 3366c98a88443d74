"""redeploy.kube's pods against the simulator over HTTP, with the unmodified official client."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import urllib3

from cratos.exceptions import NotFound
from redeploy import kube
from redeploy.exceptions import DeploymentNotFound, KubeError, KubeTransientError
from redeploy.kube import client as kube_client
from redeploy.kube.pods import label_selector_of
from tests.kubesim import label_selector
from tests.redeploy.conftest import SIM_TOKEN
from tests.redeploy.test_kube import cluster_for

SELECTOR = "app.kubernetes.io/name=web"


def ready_of(cluster) -> tuple[int, int]:
    """(Ready pods, desired replicas) of shop/web now, as a pod deletion is followed."""
    pods = kube.pod_set(cluster=cluster, namespace="shop", deployment_name="web")
    return pods.ready, pods.desired


def api_get(sim, path: str) -> dict:
    """The API's own JSON for a path, read past the product's code."""
    response = urllib3.request(
        "GET", f"{sim.url}{path}", headers={"Authorization": f"Bearer {SIM_TOKEN}"}
    )
    assert response.status == 200, response.data
    return json.loads(response.data)


def pods_of_replica_sets_of(sim, namespace: str, deployment: str) -> dict[str, str]:
    """Pod name -> ReplicaSet name, for the pods of the Deployment's ReplicaSets, by the API."""
    uid = api_get(sim, f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}")[
        "metadata"
    ]["uid"]
    replica_sets = {
        rs["metadata"]["uid"]: rs["metadata"]["name"]
        for rs in api_get(sim, f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
        if rs["metadata"]["ownerReferences"][0]["uid"] == uid
    }
    return {
        pod["metadata"]["name"]: replica_sets[pod["metadata"]["ownerReferences"][0]["uid"]]
        for pod in api_get(sim, f"/api/v1/namespaces/{namespace}/pods")["items"]
        if pod["metadata"]["ownerReferences"][0]["uid"] in replica_sets
    }


def test_deployment_pods_are_its_replica_sets_pods_with_what_kubectl_shows(sim):
    sim.add_deployment("shop", "web", replicas=3)
    started = datetime.now(UTC)
    expected = pods_of_replica_sets_of(sim, "shop", "web")
    sim.reset_requests()

    pods = kube.deployment_pods(cluster=cluster_for(sim), namespace="shop", deployment_name="web")

    assert [pod.name for pod in pods] == sorted(expected)
    for pod in pods:
        assert pod.replica_set == expected[pod.name]
        assert pod.replica_set.startswith("web-")
        assert (pod.namespace, pod.phase, pod.ready, pod.restarts) == ("shop", "Running", True, 0)
        assert (pod.node_name, pod.deleting) == ("kubesim-node", False)
        assert pod.uid
        assert abs(pod.created_at - started) < timedelta(seconds=5)
        assert pod.created_at.tzinfo is not None
    # One GET of the Deployment, then its pods and ReplicaSets by its selector.
    assert [r.path for r in sim.requests] == [
        "/apis/apps/v1/namespaces/shop/deployments/web",
        "/api/v1/namespaces/shop/pods",
        "/apis/apps/v1/namespaces/shop/replicasets",
    ]
    assert [r.query.get("labelSelector") for r in sim.requests[1:]] == [SELECTOR, SELECTOR]


def test_pods_that_the_selector_matches_but_another_deployment_owns_are_left_out(sim):
    sim.add_deployment("shop", "web", replicas=2)
    # Same app label, so web's selector matches the canary's pods and ReplicaSet too.
    sim.add_deployment("shop", "web-canary", labels={"app.kubernetes.io/name": "web"})
    canary = pods_of_replica_sets_of(sim, "shop", "web-canary")
    assert len(canary) == 1

    pods = kube.deployment_pods(cluster=cluster_for(sim), namespace="shop", deployment_name="web")

    assert {pod.name for pod in pods} == set(pods_of_replica_sets_of(sim, "shop", "web"))
    assert not {pod.name for pod in pods} & set(canary)
    assert len(pods) == 2


def test_pods_of_both_replica_sets_during_a_rollout(sim):
    sim.add_deployment("shop", "web", replicas=2)
    sim.stall("shop", "web")  # the new ReplicaSet's first pod never gets ready
    cluster = cluster_for(sim)
    kube.restart_deployment(cluster=cluster, namespace="shop", name="web", restarted_at="now")

    deadline = time.monotonic() + 3
    while True:
        pods = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
        if len({pod.replica_set for pod in pods}) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert len({pod.replica_set for pod in pods}) == 2
    assert {pod.name: pod.replica_set for pod in pods} == pods_of_replica_sets_of(
        sim, "shop", "web"
    )
    unready = [pod for pod in pods if not pod.ready]
    assert len(unready) == 1
    assert ready_of(cluster) == (2, 2)


def test_pod_lists_are_read_page_by_page(sim, monkeypatch):
    monkeypatch.setattr(kube_client, "LIST_PAGE_SIZE", 2)
    sim.add_deployment("shop", "web", replicas=5)

    pods = kube.deployment_pods(cluster=cluster_for(sim), namespace="shop", deployment_name="web")

    assert len(pods) == 5
    pages = [r for r in sim.requests if r.path.endswith("/pods")]
    assert [r.query.get("limit") for r in pages] == ["2", "2", "2"]
    assert [bool(r.query.get("continue")) for r in pages] == [False, True, True]


def test_transient_list_errors_are_retried(sim):
    sim.add_deployment("shop", "web", replicas=2)
    sim.fail_next("GET", "/pods$", status=500, times=1)
    sim.fail_next("GET", "/replicasets$", status=503, times=1)

    pods = kube.deployment_pods(cluster=cluster_for(sim), namespace="shop", deployment_name="web")

    assert len(pods) == 2
    assert len([r for r in sim.requests if r.path.endswith("/pods")]) == 2


def test_listing_errors_are_the_products(sim):
    sim.add_deployment("shop", "web")
    cluster = cluster_for(sim)
    with pytest.raises(DeploymentNotFound):
        kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="nope")

    sim.forbid("shop")
    with pytest.raises(KubeError, match="is forbidden") as forbidden:
        kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    assert not isinstance(forbidden.value, KubeTransientError)


def test_pods_ready_of_a_settled_deployment(sim):
    sim.add_deployment("shop", "web", replicas=3)
    assert ready_of(cluster_for(sim)) == (3, 3)


def test_pick_pods_refuses_a_name_that_is_not_one_of_the_deployments_pods(sim):
    sim.add_deployment("shop", "web", replicas=2)
    sim.add_deployment("shop", "api")
    cluster = cluster_for(sim)
    pods = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    (other,) = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="api")

    assert kube.pick_pods(pods, [pods[1].name, pods[0].name]) == [pods[1], pods[0]]
    for name in ("web-nope", other.name):
        with pytest.raises(kube.PodNotFound) as refused:
            kube.pick_pods(pods, [pods[0].name, name])
        assert refused.value.message == f"The pod={name} resource does not exist"
        assert isinstance(refused.value, NotFound)
        assert isinstance(refused.value, KubeError)
        assert refused.value.status_code == 404


@pytest.mark.parametrize(
    ("selector", "text", "matching", "not_matching"),
    [
        ({"matchLabels": {"app": "web"}}, "app=web", {"app": "web"}, {"app": "api"}),
        (
            {
                "matchLabels": {"tier": "front", "app": "web"},
                "matchExpressions": [
                    {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "team", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
            "app=web,tier=front,track in (canary,stable),env notin (dev),team,!legacy",
            {"app": "web", "tier": "front", "track": "canary", "team": "shop"},
            {"app": "web", "tier": "front", "track": "canary", "team": "shop", "legacy": "y"},
        ),
    ],
)
def test_selectors_become_label_selector_strings_the_api_server_parses(
    selector, text, matching, not_matching
):
    assert label_selector_of(selector) == text
    # The simulator parses selectors with the API server's grammar.
    matches = label_selector(text)
    assert matches(matching)
    assert not matches(not_matching)


def test_an_unknown_selector_operator_is_refused():
    with pytest.raises(KubeError, match='"Near" is not a valid label selector operator'):
        label_selector_of({"matchExpressions": [{"key": "a", "operator": "Near"}]})


# -- deletion (the simulator replaces a deleted pod at once; the replacement gets ready later) --


def web_pods(sim) -> list[kube.PodInfo]:
    """The two pods of shop/web, created for the test; the requests recorded start after."""
    sim.add_deployment("shop", "web", replicas=2)
    pods = kube.deployment_pods(cluster=cluster_for(sim), namespace="shop", deployment_name="web")
    sim.reset_requests()
    return pods


def test_restarts_are_the_sum_over_the_containers(sim):
    target = web_pods(sim)[0]
    sim.set_restarts("shop", target.name, 3)

    pods = kube.deployment_pods(cluster=cluster_for(sim), namespace="shop", deployment_name="web")

    assert {pod.name: pod.restarts for pod in pods} == {
        pod.name: 3 if pod.name == target.name else 0 for pod in pods
    }


def test_delete_pod_is_a_graceful_delete_of_that_very_pod_then_it_is_replaced(sim):
    sim.replacement_ready_seconds = 1.0  # time enough to see it unready first
    cluster = cluster_for(sim)
    target, other = web_pods(sim)

    deleted = kube.delete_pod(cluster=cluster, namespace="shop", name=target.name, uid=target.uid)

    assert deleted == kube.DeletedPod(
        name=target.name, namespace="shop", uid=target.uid, grace_period_seconds=30
    )
    (request,) = sim.requests
    assert request.method == "DELETE"
    assert request.path == f"/api/v1/namespaces/shop/pods/{target.name}"
    assert request.body == {"preconditions": {"uid": target.uid}}
    assert [(d.name, d.uid, d.grace_period_seconds) for d in sim.pod_deletions] == [
        (target.name, target.uid, 30)
    ]
    pods = {
        pod.name: pod
        for pod in kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    }
    assert pods[target.name].deleting
    assert not pods[other.name].deleting
    (replacement,) = set(pods) - {target.name, other.name}
    assert pods[replacement].replica_set == target.replica_set
    assert (pods[replacement].ready, pods[replacement].deleting) == (False, False)
    # Followed until the replacement is Ready: the terminating pod never counts.
    assert ready_of(cluster) == (1, 2)
    deadline = time.monotonic() + 3
    while ready_of(cluster) != (2, 2):
        assert time.monotonic() < deadline, "the replacement never got Ready"
        time.sleep(0.05)


def test_delete_pod_with_grace_period_zero_removes_it_at_once(sim):
    cluster = cluster_for(sim)
    target, other = web_pods(sim)

    kube.delete_pod(cluster=cluster, namespace="shop", name=target.name, grace_period_seconds=0)

    (request,) = sim.requests
    assert request.body == {"gracePeriodSeconds": 0}
    names = {
        pod.name
        for pod in kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    }
    assert target.name not in names
    assert other.name in names
    assert len(names) == 2


def test_deleting_a_pod_that_does_not_exist_is_pod_not_found(sim):
    web_pods(sim)
    with pytest.raises(kube.PodNotFound) as missing:
        kube.delete_pod(cluster=cluster_for(sim), namespace="shop", name="web-nope")
    assert missing.value.message == "The pod=web-nope resource does not exist"
    assert len(sim.requests) == 1  # a 404 is an answer: not retried


def test_a_pod_that_is_no_longer_the_one_picked_is_not_deleted(sim):
    target = web_pods(sim)[0]

    with pytest.raises(KubeError) as refused:
        kube.delete_pod(
            cluster=cluster_for(sim), namespace="shop", name=target.name, uid="another-uid"
        )

    assert not isinstance(refused.value, KubeTransientError)
    assert "precondition (another-uid) does not match" in refused.value.message
    assert sim.pod_deletions == []
    assert len(sim.requests) == 1


def test_transient_delete_errors_are_retried(sim):
    target = web_pods(sim)[0]
    sim.fail_next("DELETE", "/pods/", status=500, times=1)
    sim.fail_next("DELETE", "/pods/", status=429, times=1, retry_after=0)

    deleted = kube.delete_pod(cluster=cluster_for(sim), namespace="shop", name=target.name)

    assert deleted.uid == target.uid
    assert [r.method for r in sim.requests] == ["DELETE"] * 3
    assert len(sim.pod_deletions) == 1


def test_delete_refused_every_time_is_transient_and_not_in_doubt(sim, settings):
    target = web_pods(sim)[0]
    sim.fail_next("DELETE", "/pods/", status=500, times=10)

    with pytest.raises(KubeTransientError) as failed:
        kube.delete_pod(cluster=cluster_for(sim), namespace="shop", name=target.name)

    assert not isinstance(failed.value, kube.PodDeleteInDoubt)
    assert len(sim.requests) == settings.KUBERNETES_RETRY_ATTEMPTS
    assert sim.pod_deletions == []


def test_delete_answered_too_late_then_gone_counts_as_deleted(sim, settings):
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.3
    settings.KUBERNETES_RETRY_BACKOFF = 0.5
    target = web_pods(sim)[0]
    # The API removes the pod 0.4 s on, when the client has stopped waiting; the repeated
    # DELETE then finds no such pod.
    sim.hang_next("DELETE", "/pods/", seconds=0.4, times=1)

    deleted = kube.delete_pod(
        cluster=cluster_for(sim),
        namespace="shop",
        name=target.name,
        grace_period_seconds=0,
        uid=target.uid,
    )

    assert deleted == kube.DeletedPod(
        name=target.name, namespace="shop", uid=target.uid, grace_period_seconds=None
    )
    assert [r.method for r in sim.requests] == ["DELETE", "DELETE"]
    assert len(sim.pod_deletions) == 1


def test_delete_answered_too_late_while_terminating_is_not_applied_twice(sim, settings):
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.3
    settings.KUBERNETES_RETRY_BACKOFF = 0.5
    target = web_pods(sim)[0]
    sim.hang_next("DELETE", "/pods/", seconds=0.4, times=1)

    deleted = kube.delete_pod(cluster=cluster_for(sim), namespace="shop", name=target.name)

    assert (deleted.uid, deleted.grace_period_seconds) == (target.uid, 30)
    assert [r.method for r in sim.requests] == ["DELETE", "DELETE"]
    assert len(sim.pod_deletions) == 1  # the repeat found it terminating and changed nothing
    pods = kube.deployment_pods(cluster=cluster_for(sim), namespace="shop", deployment_name="web")
    assert len(pods) == 3  # one replacement only


@pytest.mark.parametrize("status", [502, 503, 504, None], ids=["502", "503", "504", "dropped"])
def test_delete_applied_but_its_answer_lost_counts_once(sim, status):
    """A gateway's 502/503/504, or the connection dropped, after the DELETE took effect: the
    repeat finds the pod terminating and changes nothing."""
    target = web_pods(sim)[0]
    sim.answer_after_applying("DELETE", "/pods/", status=status)

    deleted = kube.delete_pod(
        cluster=cluster_for(sim), namespace="shop", name=target.name, uid=target.uid
    )

    assert deleted.uid == target.uid
    assert [r.method for r in sim.requests] == ["DELETE", "DELETE"]
    assert len(sim.pod_deletions) == 1


@pytest.mark.parametrize("status", [502, 503, 504, None], ids=["502", "503", "504", "dropped"])
def test_delete_never_answered_by_a_gateway_is_in_doubt(sim, settings, status):
    target = web_pods(sim)[0]
    if status is None:
        sim.drop_next("DELETE", "/pods/", times=10)
    else:
        sim.fail_next("DELETE", "/pods/", status=status, times=10)

    with pytest.raises(kube.PodDeleteInDoubt, match="the pod may have been deleted"):
        kube.delete_pod(cluster=cluster_for(sim), namespace="shop", name=target.name)

    assert len(sim.requests) == settings.KUBERNETES_RETRY_ATTEMPTS
    assert sim.pod_deletions == []


def test_delete_never_answered_is_in_doubt(sim, settings):
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.2
    target = web_pods(sim)[0]
    sim.hang_next("DELETE", "/pods/", seconds=3, times=10)

    with pytest.raises(kube.PodDeleteInDoubt, match="the pod may have been deleted"):
        kube.delete_pod(cluster=cluster_for(sim), namespace="shop", name=target.name)


def test_a_pod_set_is_kept_up_to_date_by_a_watch_of_its_pods(sim):
    cluster = cluster_for(sim)
    sim.add_deployment("shop", "web", replicas=2)
    sim.add_deployment("shop", "web-canary", labels={"app.kubernetes.io/name": "web"})
    sim.replacement_ready_seconds = 0.3
    pods = kube.pod_set(cluster=cluster, namespace="shop", deployment_name="web")
    assert (pods.ready, pods.desired, len(pods.pods)) == (2, 2, 2)  # the canary's are not its
    victim = sorted(pods.pods.values(), key=lambda pod: pod.name)[0]
    sim.delete_pod("shop", victim.name, grace_period_seconds=1)

    with kube.Watches() as watches:
        watched = kube.Watched(
            cluster=cluster, namespace="shop", resource="pods", label_selector=pods.label_selector
        )
        watches.start(
            key=("web",), watched=watched, resource_version=pods.resource_version, seconds=3
        )
        for change in watches.changes(until=time.monotonic() + 5):
            if change.name:
                assert pods.changed(change.name, change.obj)  # the canary's pods are ignored
            if victim.name not in pods.pods:
                break

    assert not pods.still_running(name=victim.name, uid=victim.uid)
    assert (pods.ready, len(pods.pods)) == (2, 2)  # the replacement, Ready


def test_a_pod_of_a_replica_set_never_listed_asks_for_a_list_again(sim):
    sim.add_deployment("shop", "web")
    pods = kube.pod_set(cluster=cluster_for(sim), namespace="shop", deployment_name="web")
    (pod,) = sim.list_pods("shop")
    pod["metadata"]["ownerReferences"][0]["uid"] = "a-new-replica-set"

    assert pods.changed(pod["metadata"]["name"], pod) is False
    assert pods.changed(pod["metadata"]["name"], None) is True  # it left
    assert pods.pods == {}
