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
    assert kube.pods_ready(cluster=cluster, namespace="shop", deployment_name="web") == (2, 2)


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
    assert kube.pods_ready(cluster=cluster_for(sim), namespace="shop", deployment_name="web") == (
        3,
        3,
    )


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
