"""The Kubernetes API simulator, driven only through the official ``kubernetes`` client.

Plain pytest: nothing here needs Django or the suite's services.
"""

import json
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client import ApiException

from tests.kubesim import KubeSimulator, seed_demo

TOKEN = "secret-token"
STEP = 0.1
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class RolloutFailed(Exception):
    pass


def rollout_status(dep):
    """kubectl's DeploymentStatusViewer.Status (k8s.io/kubectl/pkg/polymorphichelpers)."""
    name, status = dep.metadata.name, dep.status
    if dep.metadata.generation > (status.observed_generation or 0):
        return "Waiting for deployment spec update to be observed...", False
    progressing = [c for c in status.conditions or [] if c.type == "Progressing"]
    if progressing and progressing[0].reason == "ProgressDeadlineExceeded":
        raise RolloutFailed(f'deployment "{name}" exceeded its progress deadline')
    updated = status.updated_replicas or 0
    if dep.spec.replicas is not None and updated < dep.spec.replicas:
        return f"{updated} out of {dep.spec.replicas} new replicas have been updated", False
    if (status.replicas or 0) > updated:
        return f"{status.replicas - updated} old replicas are pending termination", False
    if (status.available_replicas or 0) < updated:
        return (
            f"{status.available_replicas or 0} of {updated} updated replicas are available",
            False,
        )
    return f'deployment "{name}" successfully rolled out', True


def wait_for_rollout(api, name, namespace="default", timeout=5.0):
    """Polls like `kubectl rollout status`; returns the distinct messages seen."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message, done = rollout_status(api.read_namespaced_deployment(name, namespace))
        if not seen or seen[-1] != message:
            seen.append(message)
        if done:
            return seen
        time.sleep(STEP / 5)
    raise AssertionError(f"rollout did not finish: {seen}")


def restart_body():
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}


def status_body(exc):
    return json.loads(exc.body)


def make_client(sim, token=TOKEN, **settings):
    configuration = client.Configuration(host=sim.url, api_key={"authorization": token})
    configuration.api_key_prefix = {"authorization": "Bearer"}
    for key, value in settings.items():
        setattr(configuration, key, value)
    return client.ApiClient(configuration)


@pytest.fixture
def sim():
    with KubeSimulator(token=TOKEN, rollout_step_seconds=STEP) as sim:
        sim.add_deployment(
            "default", "web", labels={"app.kubernetes.io/name": "web", "team": "a"}, replicas=3
        )
        sim.add_deployment("default", "api", labels={"app.kubernetes.io/name": "api", "team": "b"})
        sim.add_deployment("other", "worker", labels={"app.kubernetes.io/name": "worker"})
        yield sim


@pytest.fixture
def api_client(sim):
    with make_client(sim) as api_client:
        yield api_client


@pytest.fixture
def api(api_client):
    return client.AppsV1Api(api_client)


def test_discovery_endpoints(api_client):
    assert client.VersionApi(api_client).get_code().git_version.startswith("v1.")
    assert client.CoreApi(api_client).get_api_versions().versions == ["v1"]
    groups = client.ApisApi(api_client).get_api_versions().groups
    assert [g.name for g in groups] == ["apps"]
    resources = client.AppsV1Api(api_client).get_api_resources().resources
    assert "patch" in next(r for r in resources if r.name == "deployments").verbs


def test_get_returns_a_complete_rolled_out_deployment(api):
    dep = api.read_namespaced_deployment("web", "default")
    assert dep.metadata.uid and dep.metadata.creation_timestamp
    assert dep.metadata.generation == 1 == dep.status.observed_generation
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert dep.spec.selector.match_labels == {"app.kubernetes.io/name": "web"}
    assert dep.spec.template.spec.containers[0].name == "web"
    assert dep.spec.strategy.type == "RollingUpdate"
    assert dep.spec.progress_deadline_seconds == 600
    status = dep.status
    assert status.replicas == status.updated_replicas == status.available_replicas == 3
    conditions = {c.type: (c.status, c.reason) for c in dep.status.conditions}
    assert conditions == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }
    assert rollout_status(dep)[1] is True
    assert api.read_namespaced_deployment_status("web", "default").status.replicas == 3


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("team=a", ["web"]),
        ("team==b", ["api"]),
        ("team!=a", ["api"]),
        ("team", ["api", "web"]),
        ("!team", []),
        ("team in (a, b),app.kubernetes.io/name!=api", ["web"]),
        ("team notin (a)", ["api"]),
    ],
)
def test_label_selectors(api, selector, names):
    result = api.list_namespaced_deployment("default", label_selector=selector)
    assert [d.metadata.name for d in result.items] == names


def test_list_all_namespaces_paginates_and_filters_fields(api):
    everything = api.list_deployment_for_all_namespaces()
    keys = [(d.metadata.namespace, d.metadata.name) for d in everything.items]
    assert keys == [("default", "api"), ("default", "web"), ("other", "worker")]
    assert int(everything.metadata.resource_version) >= 3
    first = api.list_deployment_for_all_namespaces(limit=2)
    assert len(first.items) == 2 and first.metadata.remaining_item_count == 1
    rest = api.list_deployment_for_all_namespaces(limit=2, _continue=first.metadata._continue)
    assert [d.metadata.name for d in rest.items] == ["worker"] and not rest.metadata._continue
    named = api.list_namespaced_deployment("default", field_selector="metadata.name=web")
    assert [d.metadata.name for d in named.items] == ["web"]
    with pytest.raises(ApiException) as bad:
        api.list_namespaced_deployment("default", label_selector="team=(a")
    assert bad.value.status == 400


def test_missing_deployment_is_a_404_status(api):
    with pytest.raises(ApiException) as caught:
        api.read_namespaced_deployment("nope", "default")
    assert caught.value.status == 404
    assert status_body(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
        "code": 404,
    }


def test_unknown_paths_and_verbs(api, api_client):
    with pytest.raises(ApiException) as unknown:
        client.CoreV1Api(api_client).list_namespaced_config_map("default")
    assert (unknown.value.status, status_body(unknown.value)["reason"]) == (404, "NotFound")
    spec = client.V1DeploymentSpec(
        selector=client.V1LabelSelector(), template=client.V1PodTemplateSpec()
    )
    body = client.V1Deployment(metadata=client.V1ObjectMeta(name="new"), spec=spec)
    with pytest.raises(ApiException) as create:
        api.create_namespaced_deployment("default", body)
    assert (create.value.status, status_body(create.value)["reason"]) == (405, "MethodNotAllowed")


@pytest.mark.parametrize("token", [None, "wrong"])
def test_requests_without_the_right_token_are_unauthorized(sim, token):
    configuration = client.Configuration(host=sim.url)
    if token:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(configuration) as api_client, pytest.raises(ApiException) as caught:
        client.AppsV1Api(api_client).read_namespaced_deployment("web", "default")
    assert caught.value.status == 401
    assert status_body(caught.value)["reason"] == "Unauthorized"


def test_restart_patch_rolls_out_by_kubectls_rules(sim, api):
    before = api.read_namespaced_deployment("web", "default")
    sim.reset_requests()
    patched = api.patch_namespaced_deployment(
        "web", "default", restart_body(), field_manager="cratos-redeploy"
    )

    (request,) = sim.requests
    assert request.method == "PATCH"
    assert request.path == "/apis/apps/v1/namespaces/default/deployments/web"
    assert request.content_type == "application/strategic-merge-patch+json"
    assert request.query == {"fieldManager": "cratos-redeploy"}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert RESTARTED_AT in request.body["spec"]["template"]["metadata"]["annotations"]

    assert patched.metadata.generation == before.metadata.generation + 1
    assert int(patched.metadata.resource_version) > int(before.metadata.resource_version)
    assert RESTARTED_AT in patched.spec.template.metadata.annotations
    assert patched.spec.template.spec.containers[0].image == "nginx:1.27"  # merged, not replaced
    manager = next(m for m in patched.metadata.managed_fields if m.manager == "cratos-redeploy")
    assert manager.operation == "Update"
    template_fields = manager.fields_v1["f:spec"]["f:template"]["f:metadata"]["f:annotations"]
    assert f"f:{RESTARTED_AT}" in template_fields

    expected = [
        "Waiting for deployment spec update to be observed...",
        "1 out of 3 new replicas have been updated",
        "2 out of 3 new replicas have been updated",
        "3 out of 3 new replicas have been updated",
        "1 old replicas are pending termination",
        'deployment "web" successfully rolled out',
    ]
    # The PATCH's own answer: the new spec is not observed yet.
    assert rollout_status(patched)[0] == expected[0]
    seen = wait_for_rollout(api, "web")
    # Polling may skip states on a busy machine, but never reorders or invents one.
    assert seen == [m for m in expected if m in seen] and len(seen) >= 2
    assert seen[-1] == expected[-1]

    done = api.read_namespaced_deployment("web", "default")
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    progressing = next(c for c in done.status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "NewReplicaSetAvailable")
    assert progressing.last_transition_time <= progressing.last_update_time


def test_replicasets_and_pods_follow_the_rollout(sim, api, api_client):
    api.patch_namespaced_deployment("web", "default", restart_body())
    wait_for_rollout(api, "web")
    dep = api.read_namespaced_deployment("web", "default")
    rs_list = api.list_namespaced_replica_set(
        "default", label_selector="app.kubernetes.io/name=web"
    )
    by_revision = {
        rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs for rs in rs_list.items
    }
    assert sorted(by_revision) == ["1", "2"]
    old, new = by_revision["1"], by_revision["2"]
    assert (old.spec.replicas, new.spec.replicas, new.status.ready_replicas) == (0, 3, 3)
    assert new.metadata.name == f"web-{new.metadata.labels['pod-template-hash']}"
    assert RESTARTED_AT in new.spec.template.metadata.annotations
    (owner,) = new.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == ("Deployment", "web", True)
    assert owner.uid == dep.metadata.uid
    assert api.read_namespaced_replica_set(new.metadata.name, "default").spec.replicas == 3

    pods = client.CoreV1Api(api_client).list_namespaced_pod(
        "default", label_selector=f"pod-template-hash={new.metadata.labels['pod-template-hash']}"
    )
    assert len(pods.items) == 3
    assert all(p.metadata.owner_references[0].name == new.metadata.name for p in pods.items)
    assert all(p.status.phase == "Running" for p in pods.items)


def test_paused_deployment_observes_but_does_not_roll_out(sim, api):
    api.patch_namespaced_deployment("web", "default", {"spec": {"paused": True}})
    api.patch_namespaced_deployment("web", "default", restart_body())
    time.sleep(STEP * 6)
    dep = api.read_namespaced_deployment("web", "default")
    assert dep.spec.paused is True
    assert dep.status.observed_generation == dep.metadata.generation == 3
    progressing = next(c for c in dep.status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("Unknown", "DeploymentPaused")
    assert rollout_status(dep) == ("0 out of 3 new replicas have been updated", False)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "1"

    api.patch_namespaced_deployment("web", "default", {"spec": {"paused": False}})
    wait_for_rollout(api, "web")
    dep = api.read_namespaced_deployment("web", "default")
    assert dep.spec.paused is None  # false is omitted on the wire, like the real API
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "2"


def test_stalled_rollout_exceeds_its_progress_deadline(sim, api):
    sim.add_deployment("default", "slow", replicas=2, progress_deadline_seconds=1)
    sim.stall("default", "slow")
    api.patch_namespaced_deployment("slow", "default", restart_body())
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline"):
        wait_for_rollout(api, "slow", timeout=3)
    dep = api.read_namespaced_deployment("slow", "default")
    progressing = next(c for c in dep.status.conditions if c.type == "Progressing")
    assert progressing.status == "False"
    assert progressing.message.endswith("has timed out progressing.")
    assert dep.status.updated_replicas == 1 and dep.status.available_replicas == 2
    snapshot = sim.get_deployment("default", "slow")  # the Python view agrees with the API
    assert snapshot["status"]["conditions"][1]["reason"] == "ProgressDeadlineExceeded"

    sim.stall("default", "slow", stalled=False)
    assert wait_for_rollout(api, "slow")[-1] == 'deployment "slow" successfully rolled out'


def test_merge_patch_deletes_with_null_and_replaces_lists(sim, api):
    dep = api.patch_namespaced_deployment(
        "web",
        "default",
        {
            "metadata": {"labels": {"team": None, "tier": "frontend"}},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}},
        },
        _content_type="application/merge-patch+json",
    )
    assert sim.requests[-1].content_type == "application/merge-patch+json"
    assert dep.metadata.labels == {"app.kubernetes.io/name": "web", "tier": "frontend"}
    (container,) = dep.spec.template.spec.containers
    assert (container.image, container.ports) == ("nginx:2", None)  # the list was replaced


def test_strategic_merge_merges_containers_by_name(api):
    dep = api.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}},
    )
    (container,) = dep.spec.template.spec.containers
    assert (container.image, container.ports[0].container_port) == ("nginx:2", 80)


def test_json_patch(sim, api):
    dep = api.patch_namespaced_deployment(
        "web",
        "default",
        [
            {"op": "test", "path": "/spec/replicas", "value": 3},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "add", "path": "/metadata/labels/tier", "value": "frontend"},
            {"op": "remove", "path": "/metadata/labels/team"},
        ],
    )
    assert sim.requests[-1].content_type == "application/json-patch+json"
    assert dep.spec.replicas == 4
    assert dep.metadata.labels == {"app.kubernetes.io/name": "web", "tier": "frontend"}
    with pytest.raises(ApiException) as failed:
        api.patch_namespaced_deployment(
            "web", "default", [{"op": "test", "path": "/spec/replicas", "value": 3}]
        )
    assert failed.value.status == 422


def test_invalid_patches_are_rejected(api):
    with pytest.raises(ApiException) as media:
        api.patch_namespaced_deployment(
            "web", "default", {"spec": {}}, _content_type="application/apply-patch+yaml"
        )
    assert (media.value.status, status_body(media.value)["reason"]) == (415, "UnsupportedMediaType")
    with pytest.raises(ApiException) as invalid:
        api.patch_namespaced_deployment("web", "default", {"spec": {"replicas": -1}})
    assert (invalid.value.status, status_body(invalid.value)["reason"]) == (422, "Invalid")
    assert status_body(invalid.value)["details"]["causes"][0]["field"] == "spec.replicas"
    with pytest.raises(ApiException) as manager:
        api.patch_namespaced_deployment("web", "default", restart_body(), field_manager="x" * 129)
    assert manager.value.status == 422


def test_stale_resource_version_conflicts(api):
    current = api.read_namespaced_deployment("web", "default")
    api.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"x": "y"}}})
    stale = {"metadata": {"resourceVersion": current.metadata.resource_version}}
    with pytest.raises(ApiException) as caught:
        api.patch_namespaced_deployment("web", "default", stale)
    assert caught.value.status == 409
    body = status_body(caught.value)
    assert body["reason"] == "Conflict" and "the object has been modified" in body["message"]

    current = api.read_namespaced_deployment("web", "default")
    current.metadata.labels["replaced"] = "yes"
    replaced = api.replace_namespaced_deployment("web", "default", current)
    assert replaced.metadata.labels["replaced"] == "yes"
    with pytest.raises(ApiException) as again:
        api.replace_namespaced_deployment("web", "default", current)  # now stale
    assert again.value.status == 409


def test_dry_run_does_not_store(api):
    before = api.read_namespaced_deployment("web", "default")
    dry = api.patch_namespaced_deployment("web", "default", restart_body(), dry_run="All")
    assert dry.metadata.generation == before.metadata.generation + 1
    after = api.read_namespaced_deployment("web", "default")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.spec.template.metadata.annotations is None


def test_injected_faults(sim, api, api_client):
    sim.fail_next(method="PATCH", path_regex=r"/deployments/web$", status=500)
    with pytest.raises(ApiException) as error:
        api.patch_namespaced_deployment("web", "default", restart_body())
    assert (error.value.status, status_body(error.value)["reason"]) == (500, "InternalError")

    sim.fail_next(method="PATCH", path_regex=r"/deployments/web$", status=429, retry_after=2)
    with pytest.raises(ApiException) as throttled:
        api.patch_namespaced_deployment("web", "default", restart_body())
    assert throttled.value.status == 429 and throttled.value.headers["Retry-After"] == "2"
    assert status_body(throttled.value)["details"] == {"retryAfterSeconds": 2}

    sim.fail_next(method="PATCH", status=409)
    with pytest.raises(ApiException) as conflict:
        api.patch_namespaced_deployment("web", "default", restart_body())
    assert status_body(conflict.value)["reason"] == "Conflict"

    assert (
        api.patch_namespaced_deployment("web", "default", restart_body()).metadata.generation == 2
    )

    # The client itself honours Retry-After for reads when client-go retries are enabled.
    sim.fail_next(method="GET", status=429, retry_after=0)
    sim.reset_requests()
    with make_client(sim, client_go_retries=True) as retrying:
        client.AppsV1Api(retrying).read_namespaced_deployment("web", "default")
    assert len(sim.requests) == 2


def test_forbidden_namespace(sim, api):
    sim.forbid("other")
    with pytest.raises(ApiException) as caught:
        api.read_namespaced_deployment("worker", "other")
    assert (caught.value.status, status_body(caught.value)["reason"]) == (403, "Forbidden")
    assert api.read_namespaced_deployment("web", "default").metadata.name == "web"


def test_hanging_request_hits_the_client_timeout(sim):
    sim.hang_next(method="GET", path_regex="/deployments/web$", seconds=2)
    with (
        make_client(sim, retries=False) as slow,
        pytest.raises(urllib3.exceptions.ReadTimeoutError),
    ):
        client.AppsV1Api(slow).read_namespaced_deployment("web", "default", _request_timeout=0.3)
    assert sim.requests[-1].path.endswith("/deployments/web")


def test_watch_streams_rollout_progress_and_deletion(sim, api):
    events, w = [], watch.Watch()

    def restart_then_delete():
        time.sleep(0.2)
        api.patch_namespaced_deployment("web", "default", restart_body())
        wait_for_rollout(api, "web")
        api.delete_namespaced_deployment("web", "default")

    threading.Thread(target=restart_then_delete, daemon=True).start()
    for event in w.stream(
        api.list_namespaced_deployment,
        "default",
        field_selector="metadata.name=web",
        timeout_seconds=5,
    ):
        events.append(event)
        if event["type"] == "DELETED":
            w.stop()

    assert events[0]["type"] == "ADDED" and events[0]["object"].metadata.name == "web"
    assert {e["type"] for e in events} == {"ADDED", "MODIFIED", "DELETED"}
    modified = [e["object"] for e in events if e["type"] == "MODIFIED"]
    assert all(isinstance(d, client.V1Deployment) for d in modified)
    # The PATCH itself, then one controller write per rollout step.
    assert modified[0].metadata.generation == 2 and modified[0].status.observed_generation == 1
    observed = [d.status.updated_replicas for d in modified if d.status.observed_generation == 2]
    # One write per step; a busy machine may let the controller take several steps, up to the
    # whole rollout, in one write.
    assert observed and observed == sorted(observed) and observed[-1] == 3
    versions = [int(e["object"].metadata.resource_version) for e in events]
    assert versions == sorted(versions)
    assert rollout_status(modified[-1])[1] is True


def test_watch_resumes_from_a_resource_version(api):
    listed = api.list_namespaced_deployment("default")
    api.patch_namespaced_deployment("api", "default", {"metadata": {"labels": {"x": "y"}}})
    stream = watch.Watch().stream(
        api.list_namespaced_deployment,
        "default",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    )
    (event,) = list(stream)  # no ADDED events when resuming
    assert event["type"] == "MODIFIED" and event["object"].metadata.labels["x"] == "y"


def test_watch_from_a_compacted_resource_version_is_gone(sim, api):
    old = api.list_namespaced_deployment("default").metadata.resource_version
    api.patch_namespaced_deployment("api", "default", {"metadata": {"labels": {"x": "y"}}})
    sim.compact()
    stream = watch.Watch().stream(
        api.list_namespaced_deployment, "default", resource_version=old, timeout_seconds=2
    )
    with pytest.raises(ApiException) as gone:
        list(stream)
    assert gone.value.status == 410 and gone.value.reason.startswith("Expired: too old")


def test_watch_sends_bookmarks_when_allowed_and_one_as_it_times_out(sim, api):
    sim.bookmark_seconds = 0.4
    start = api.list_namespaced_deployment("default").metadata.resource_version
    api.patch_namespaced_deployment("worker", "other", {"metadata": {"labels": {"x": "y"}}})
    stream = watch.Watch().stream(
        api.list_namespaced_deployment,
        "default",
        resource_version=start,
        allow_watch_bookmarks=True,
        timeout_seconds=1,
    )
    events = list(stream)
    assert {e["type"] for e in events} == {"BOOKMARK"}  # nothing changed in "default"
    assert len(events) >= 2  # every bookmark_seconds, and the last as the watch timed out
    last = events[-1]["raw_object"]
    assert last["kind"] == "Deployment" and int(last["metadata"]["resourceVersion"]) > int(start)
    # Resuming from a bookmark skips what this watch was not interested in.
    resumed = watch.Watch().stream(
        api.list_namespaced_deployment,
        "default",
        resource_version=last["metadata"]["resourceVersion"],
        timeout_seconds=1,
    )
    assert list(resumed) == []


def test_watch_without_bookmarks_allowed_sends_none(sim, api):
    sim.bookmark_seconds = 0.2
    start = api.list_namespaced_deployment("default").metadata.resource_version
    stream = watch.Watch().stream(
        api.list_namespaced_deployment, "default", resource_version=start, timeout_seconds=1
    )
    assert list(stream) == []


def test_tls_with_ca_data_in_kubeconfig(tmp_path):
    with KubeSimulator(token=TOKEN, tls=True) as sim:
        sim.add_deployment("default", "web")
        assert sim.url.startswith("https://127.0.0.1:")
        path = sim.kubeconfig(tmp_path / "config", context="sim")
        with config.new_client_from_config(config_file=str(path), context="sim") as api_client:
            assert client.AppsV1Api(api_client).list_namespaced_deployment("default").items
        with make_client(sim, retries=False) as untrusted, pytest.raises(ApiException) as caught:
            client.AppsV1Api(untrusted).list_namespaced_deployment("default")
        assert caught.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in caught.value.reason
        with make_client(sim, ca_cert_data=sim.ca_pem) as trusted:
            assert client.AppsV1Api(trusted).read_namespaced_deployment("web", "default")


def test_client_certificates(tmp_path):
    with KubeSimulator(client_cert=True) as sim:
        sim.add_deployment("default", "web")
        path = sim.kubeconfig(tmp_path / "config", user="admin")
        with config.new_client_from_config(config_file=str(path)) as api_client:
            assert client.AppsV1Api(api_client).read_namespaced_deployment("web", "default")
        with (
            make_client(sim, ca_cert_data=sim.ca_pem, retries=False) as anonymous,
            pytest.raises((urllib3.exceptions.HTTPError, ApiException)),
        ):
            client.AppsV1Api(anonymous).read_namespaced_deployment("web", "default")


def test_demo_seed_and_cli(tmp_path):
    with KubeSimulator() as sim:
        seed_demo(sim)
        with make_client(sim) as api_client:
            listed = client.AppsV1Api(api_client).list_deployment_for_all_namespaces()
    namespaces = {d.metadata.namespace for d in listed.items}
    assert namespaces == {"shop", "payments"} and len(listed.items) >= 4

    kubeconfig = tmp_path / "config"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.kubesim", "--port", "0", "--demo", "--step", "0.1"),
            *("--token", TOKEN, "--kubeconfig", str(kubeconfig)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert re.fullmatch(r"kubesim serving http://127\.0\.0\.1:\d+\n", line)
        with config.new_client_from_config(config_file=str(kubeconfig)) as api_client:
            api = client.AppsV1Api(api_client)
            api.patch_namespaced_deployment("web", "shop", restart_body())
            assert wait_for_rollout(api, "web", "shop")[-1].endswith("successfully rolled out")
    finally:
        process.terminate()
        process.wait(timeout=5)
