"""kubesim's pods, driven only through the official ``kubernetes`` client over HTTP:
deletion as the apiserver does it, replacement by the ReplicaSet, selectors and watches.

Plain pytest: nothing here needs Django or the suite's services.
"""

import re
import threading
import time
from datetime import UTC, datetime

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiException

from tests.kubesim import KubeSimulator
from tests.test_kubesim import STEP, TOKEN, make_client, restart_body, status_body, wait_for_rollout

READY_SECONDS = 1.0  # how long a replacement pod takes to become ready in these tests


@pytest.fixture
def sim():
    with KubeSimulator(
        token=TOKEN, rollout_step_seconds=STEP, replacement_ready_seconds=READY_SECONDS
    ) as sim:
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
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client):
    return client.AppsV1Api(api_client)


def web_pods(core):
    return core.list_namespaced_pod("default", label_selector="app.kubernetes.io/name=web").items


def ready(pod):
    return next(c.status for c in pod.status.conditions if c.type == "Ready") == "True"


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_discovery_offers_pod_delete_and_watch(api_client):
    resources = client.CoreV1Api(api_client).get_api_resources().resources
    pods = next(r for r in resources if r.name == "pods")
    assert {"get", "list", "watch", "delete"} <= set(pods.verbs)
    assert (pods.singular_name, pods.short_names) == ("pod", ["po"])
    apps = client.AppsV1Api(api_client).get_api_resources().resources
    assert next(r for r in apps if r.name == "deployments").short_names == ["deploy"]


def test_pods_are_individual_and_stable(sim, core, apps):
    pods = web_pods(core)
    rs = apps.list_namespaced_replica_set("default", label_selector="app.kubernetes.io/name=web")
    (rs,) = rs.items
    pod_hash = rs.metadata.labels["pod-template-hash"]
    assert len(pods) == 3 and len({p.metadata.uid for p in pods}) == 3
    for pod in pods:
        assert re.fullmatch(rf"web-{pod_hash}-[a-z0-9]{{5}}", pod.metadata.name)
        assert pod.metadata.labels == {
            "app.kubernetes.io/name": "web",
            "team": "a",
            "pod-template-hash": pod_hash,
        }
        (owner,) = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == (
            "ReplicaSet",
            rs.metadata.name,
            rs.metadata.uid,
        )
        assert pod.metadata.creation_timestamp and pod.status.start_time
        assert pod.status.phase == "Running" and ready(pod)
        assert pod.status.container_statuses[0].restart_count == 0
        assert pod.spec.termination_grace_period_seconds == 30
        assert (
            core.read_namespaced_pod(pod.metadata.name, "default").metadata.uid == pod.metadata.uid
        )
    time.sleep(STEP * 3)  # time passing changes nothing about a settled pod
    again = web_pods(core)
    assert [(p.metadata.name, p.metadata.resource_version) for p in again] == [
        (p.metadata.name, p.metadata.resource_version) for p in pods
    ]


def test_graceful_delete_keeps_the_pod_until_its_grace_period_ends(sim, core, apps):
    victim = web_pods(core)[0]
    name = victim.metadata.name
    answer = core.delete_namespaced_pod(name, "default", grace_period_seconds=2)

    # 200 with the Pod, now carrying its deletion; it stays listed, ready and Running.
    assert isinstance(answer, client.V1Pod) and answer.metadata.uid == victim.metadata.uid
    assert answer.metadata.deletion_grace_period_seconds == 2
    expected = datetime.now(UTC).timestamp() + 2
    assert abs(answer.metadata.deletion_timestamp.timestamp() - expected) < 1.5
    assert int(answer.metadata.resource_version) > int(victim.metadata.resource_version)
    terminating = core.read_namespaced_pod(name, "default")
    assert terminating.metadata.deletion_timestamp == answer.metadata.deletion_timestamp
    assert terminating.status.phase == "Running" and ready(terminating)

    # The ReplicaSet has replaced it at once; the replacement is not ready yet, so the
    # deployment (3 replicas, maxUnavailable 25% rounds down to 0) lost its availability.
    pods = web_pods(core)
    replacements = [p for p in pods if p.metadata.deletion_timestamp is None]
    assert len(pods) == 4 and len(replacements) == 3
    (new,) = [p for p in replacements if not ready(p)]
    assert new.metadata.name != name
    assert new.metadata.owner_references[0].uid == victim.metadata.owner_references[0].uid
    assert new.status.phase == "Pending"
    assert new.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    dep = apps.read_namespaced_deployment("web", "default")
    status = dep.status
    assert (status.replicas, status.updated_replicas, status.ready_replicas) == (3, 3, 2)
    assert (status.available_replicas, status.unavailable_replicas) == (2, 1)
    conditions = {c.type: c for c in status.conditions}
    assert (conditions["Available"].status, conditions["Available"].reason) == (
        "False",
        "MinimumReplicasUnavailable",
    )
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"  # the rollout is done
    rs = apps.read_namespaced_replica_set(victim.metadata.owner_references[0].name, "default")
    assert (rs.spec.replicas, rs.status.replicas, rs.status.ready_replicas) == (3, 3, 2)

    # The replacement becomes ready, the deployment available again; then the pod goes.
    wait_until(lambda: apps.read_namespaced_deployment("web", "default").status.ready_replicas == 3)
    dep = apps.read_namespaced_deployment("web", "default")
    available = next(c for c in dep.status.conditions if c.type == "Available")
    assert (available.status, available.reason) == ("True", "MinimumReplicasAvailable")
    assert available.last_transition_time >= conditions["Available"].last_transition_time
    wait_until(lambda: len(web_pods(core)) == 3, timeout=3)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod(name, "default")
    assert gone.value.status == 404
    assert all(ready(p) for p in web_pods(core))
    (deletion,) = sim.pod_deletions
    assert (deletion.namespace, deletion.name, deletion.uid) == (
        "default",
        name,
        victim.metadata.uid,
    )
    assert (deletion.grace_period_seconds, deletion.propagation_policy) == (2, None)


def test_zero_grace_period_deletes_at_once(sim, core):
    victim = web_pods(core)[0].metadata.name
    body = client.V1DeleteOptions(grace_period_seconds=0, propagation_policy="Background")
    answer = core.delete_namespaced_pod(victim, "default", body=body)
    assert answer.metadata.name == victim and answer.metadata.deletion_grace_period_seconds == 0
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod(victim, "default")
    assert gone.value.status == 404
    names = [p.metadata.name for p in web_pods(core)]
    assert len(names) == 3 and victim not in names
    assert sim.pod_deletions[-1].grace_period_seconds == 0
    assert sim.pod_deletions[-1].propagation_policy == "Background"


def test_default_grace_period_is_the_pods(sim, core):
    victim = web_pods(core)[0].metadata.name
    answer = core.delete_namespaced_pod(victim, "default")
    assert answer.metadata.deletion_grace_period_seconds == 30
    expected = datetime.now(UTC).timestamp() + 30
    assert abs(answer.metadata.deletion_timestamp.timestamp() - expected) < 1.5
    assert sim.pod_deletions[-1].grace_period_seconds == 30


def test_deleting_again_can_only_shorten_the_grace_period(sim, core):
    victim = web_pods(core)[0].metadata.name
    first = core.delete_namespaced_pod(victim, "default", grace_period_seconds=30)
    longer = core.delete_namespaced_pod(victim, "default", grace_period_seconds=60)
    assert longer.metadata.deletion_timestamp == first.metadata.deletion_timestamp
    assert longer.metadata.resource_version == first.metadata.resource_version
    assert len(web_pods(core)) == 4  # one replacement only
    shorter = core.delete_namespaced_pod(victim, "default", grace_period_seconds=10)
    assert shorter.metadata.deletion_grace_period_seconds == 10
    moved = first.metadata.deletion_timestamp.timestamp() - 20
    assert shorter.metadata.deletion_timestamp.timestamp() == moved
    core.delete_namespaced_pod(victim, "default", grace_period_seconds=0)
    assert len(web_pods(core)) == 3
    assert [d.grace_period_seconds for d in sim.pod_deletions] == [30, 10, 0]


def test_negative_grace_period_means_one_second(core):
    victim = web_pods(core)[0].metadata.name
    answer = core.delete_namespaced_pod(victim, "default", grace_period_seconds=-5)
    assert answer.metadata.deletion_grace_period_seconds == 1


def test_dry_run_delete_changes_nothing(sim, core):
    victim = web_pods(core)[0]
    answer = core.delete_namespaced_pod(victim.metadata.name, "default", dry_run="All")
    assert answer.metadata.deletion_grace_period_seconds == 30
    after = core.read_namespaced_pod(victim.metadata.name, "default")
    assert after.metadata.deletion_timestamp is None
    assert after.metadata.resource_version == victim.metadata.resource_version
    assert len(web_pods(core)) == 3 and sim.pod_deletions == []


def test_unknown_pod_is_a_404_status(core):
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_pod("nope", "default")
    assert caught.value.status == 404
    assert status_body(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }


def test_preconditions_must_match(sim, core):
    victim = web_pods(core)[0]
    name, uid, rv = victim.metadata.name, victim.metadata.uid, victim.metadata.resource_version
    wrong_uid = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="other-uid"))
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_pod(name, "default", body=wrong_uid)
    assert caught.value.status == 409
    assert status_body(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": (
            f'Operation cannot be fulfilled on Pod "{name}": the UID in the precondition '
            f"(other-uid) does not match the UID in record ({uid}). The object might have "
            "been deleted and then recreated"
        ),
        "reason": "Conflict",
        "details": {"name": name, "kind": "Pod"},
        "code": 409,
    }
    stale = str(int(rv) + 1000)
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=stale))
    with pytest.raises(ApiException) as modified:
        core.delete_namespaced_pod(name, "default", body=body)
    assert status_body(modified.value)["message"].endswith(
        f"the ResourceVersion in the precondition ({stale}) does not match the ResourceVersion "
        f"in record ({rv}). The object might have been modified"
    )
    assert sim.pod_deletions == []
    matching = client.V1Preconditions(uid=uid, resource_version=rv)
    body = client.V1DeleteOptions(preconditions=matching, grace_period_seconds=0)
    assert core.delete_namespaced_pod(name, "default", body=body).metadata.uid == uid


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"propagation_policy": "Sideways"},
            'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
            '"Sideways": supported values: "Foreground", "Background", "Orphan", "nil"',
        ),
        (
            {"propagation_policy": "Orphan", "orphan_dependents": True},
            'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: '
            '"Orphan": orphanDependents and deletionPropagation cannot be both set',
        ),
    ],
)
def test_invalid_delete_options(core, options, message):
    victim = web_pods(core)[0].metadata.name
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_pod(victim, "default", **options)
    assert (caught.value.status, status_body(caught.value)["message"]) == (422, message)


def test_forbidden_namespace_refuses_pod_deletion(sim, core):
    sim.forbid("other")
    (pod,) = sim.list_pods("other")
    name = pod["metadata"]["name"]
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_pod(name, "other")
    assert caught.value.status == 403
    assert status_body(caught.value)["message"] == (
        f'pods "{name}" is forbidden: User "sim-user" cannot delete resource "pods" in API '
        'group "" in the namespace "other"'
    )
    assert len(sim.list_pods("other")) == 1


def test_deletion_is_watched(sim, core):
    selector = "app.kubernetes.io/name=web"
    listed = core.list_namespaced_pod("default", label_selector=selector)
    victim = listed.items[0].metadata.name
    events, w = [], watch.Watch()

    def delete():
        time.sleep(0.2)
        core.delete_namespaced_pod(victim, "default", grace_period_seconds=2)

    threading.Thread(target=delete, daemon=True).start()
    for event in w.stream(
        core.list_namespaced_pod,
        "default",
        label_selector=selector,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    ):
        events.append((event["type"], event["object"]))
        if event["type"] == "DELETED":
            w.stop()

    mine = [(kind, pod) for kind, pod in events if pod.metadata.name == victim]
    assert [kind for kind, _ in mine] == ["MODIFIED", "DELETED"]
    assert mine[0][1].metadata.deletion_timestamp is not None
    others = [(kind, pod) for kind, pod in events if pod.metadata.name != victim]
    assert [kind for kind, _ in others] == ["ADDED", "MODIFIED"]  # created, then ready
    assert not ready(others[0][1]) and ready(others[1][1])
    versions = [int(pod.metadata.resource_version) for _, pod in events]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert all(isinstance(pod, client.V1Pod) for _, pod in events)


def test_force_deletion_is_watched_as_modified_then_deleted(core):
    listed = core.list_namespaced_pod("default")
    victim = listed.items[0].metadata.name
    core.delete_namespaced_pod(victim, "default", grace_period_seconds=0)
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        "default",
        field_selector=f"metadata.name={victim}",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    )
    assert [e["type"] for e in stream] == ["MODIFIED", "DELETED"]


@pytest.mark.parametrize(
    ("selector", "count"),
    [
        ("app.kubernetes.io/name=web", 3),
        ("team==b", 1),
        ("team!=a", 1),
        ("team in (a, b)", 4),
        ("team notin (a)", 1),
        ("team", 4),
        ("!team", 0),
        ("pod-template-hash,team=a", 3),
    ],
)
def test_pods_by_label_selector(core, selector, count):
    assert len(core.list_namespaced_pod("default", label_selector=selector).items) == count


def test_pods_by_field_selector(sim, core):
    everything = core.list_pod_for_all_namespaces().items
    assert len(everything) == 5
    name = everything[0].metadata.name
    named = core.list_namespaced_pod("default", field_selector=f"metadata.name={name}")
    assert [p.metadata.name for p in named.items] == [name]
    assert len(core.list_pod_for_all_namespaces(field_selector="status.phase=Running").items) == 5
    assert core.list_pod_for_all_namespaces(field_selector="status.phase!=Running").items == []
    on_node = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=kubesim-node")
    assert len(on_node.items) == 5
    both = "status.phase=Running,metadata.namespace=other"
    assert len(core.list_pod_for_all_namespaces(field_selector=both).items) == 1

    sim.delete_pod("default", name, grace_period_seconds=10)  # the replacement is Pending
    pending = core.list_namespaced_pod("default", field_selector="status.phase=Pending")
    assert len(pending.items) == 1 and pending.items[0].metadata.name != name
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_pod("default", field_selector="spec.containers=web")
    assert bad.value.status == 400
    assert status_body(bad.value)["message"] == "field label not supported: spec.containers"


def test_pods_page_with_limit_and_continue(core):
    first = core.list_namespaced_pod("default", limit=3)
    assert len(first.items) == 3 and first.metadata.remaining_item_count == 1
    rest = core.list_namespaced_pod("default", limit=3, _continue=first.metadata._continue)
    names = [p.metadata.name for p in first.items + rest.items]
    assert len(rest.items) == 1 and not rest.metadata._continue
    assert names == sorted(names) and len(set(names)) == 4


def test_restarts_can_be_set(sim, core):
    pod = web_pods(core)[0]
    sim.set_restarts("default", pod.metadata.name, 4)
    after = core.read_namespaced_pod(pod.metadata.name, "default")
    (container,) = after.status.container_statuses
    assert container.restart_count == 4
    assert container.last_state.terminated.exit_code == 1
    assert int(after.metadata.resource_version) > int(pod.metadata.resource_version)
    assert ready(after)


def test_rollout_restart_replaces_every_pod(sim, core, apps):
    before = {p.metadata.name for p in web_pods(core)}
    apps.patch_namespaced_deployment("web", "default", restart_body())
    wait_for_rollout(apps, "web")
    after = web_pods(core)
    assert len(after) == 3 and not before & {p.metadata.name for p in after}
    assert all(ready(p) and p.metadata.deletion_timestamp is None for p in after)
    assert len({p.metadata.labels["pod-template-hash"] for p in after}) == 1


def test_larger_deployment_stays_available_through_one_deletion(sim, core, apps):
    sim.add_deployment("default", "big", replicas=4)
    victim = core.list_namespaced_pod("default", label_selector="app.kubernetes.io/name=big")
    core.delete_namespaced_pod(victim.items[0].metadata.name, "default", grace_period_seconds=1)
    dep = apps.read_namespaced_deployment("big", "default")
    assert dep.status.ready_replicas == 3  # maxUnavailable 25% of 4 is 1
    available = next(c for c in dep.status.conditions if c.type == "Available")
    assert available.status == "True"


def test_deleting_a_pod_of_a_stalled_rollout_keeps_it_crashing(sim, core, apps):
    sim.stall("default", "api")
    apps.patch_namespaced_deployment("api", "default", restart_body())
    time.sleep(STEP * 3)
    crashing = core.list_namespaced_pod("default", field_selector="status.phase=Running").items
    (new,) = [
        p for p in crashing if p.metadata.labels["app.kubernetes.io/name"] == "api" and not ready(p)
    ]
    assert new.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    core.delete_namespaced_pod(new.metadata.name, "default", grace_period_seconds=0)
    time.sleep(READY_SECONDS + STEP)
    api_pods = core.list_namespaced_pod("default", label_selector="app.kubernetes.io/name=api")
    (replacement,) = [p for p in api_pods.items if not ready(p)]
    assert replacement.metadata.name != new.metadata.name
    assert replacement.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"


def test_deleting_a_deployment_deletes_its_pods(sim, core, apps):
    apps.delete_namespaced_deployment("web", "default")
    assert web_pods(core) == []
    assert len(core.list_namespaced_pod("default").items) == 1


def test_watch_list_sends_initial_events_then_a_bookmark(apps):
    stream = watch.Watch().stream(
        apps.list_namespaced_deployment,
        "default",
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
        timeout_seconds=1,
    )
    events = list(stream)
    # The initial events, the bookmark that ends them, and one as the watch times out.
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK", "BOOKMARK"]
    end = events[2]["raw_object"]["metadata"]
    assert end["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert "annotations" not in events[3]["raw_object"]["metadata"]
    with pytest.raises(ApiException) as invalid:
        apps.list_namespaced_deployment("default", watch=True, send_initial_events=True)
    assert invalid.value.status == 422
