"""redeploy.kube's clients, errors, retries and Deployment calls against the simulator over
HTTP(S), with the unmodified official client. The rollout rules, kubeconfig files and pods have
test_kube_rollout.py, test_kube_config.py and test_kube_pods.py."""

import json
import re
import time
from types import SimpleNamespace

import pytest
from kubernetes.client.exceptions import ApiException

from redeploy import kube
from redeploy.exceptions import DeploymentNotFound, KubeError, KubeTransientError, RestartInDoubt
from redeploy.kube import client as kube_client
from redeploy.models import KubernetesCluster
from tests.kubesim import DEMO, KubeSimulator, seed_demo
from tests.redeploy.conftest import SIM_TOKEN

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def cluster_for(sim, **fields) -> KubernetesCluster:
    return KubernetesCluster(name="sim", server=sim.url, **({"token": SIM_TOKEN} | fields))


def test_restart_is_kubectls_strategic_merge_patch_with_our_field_manager(sim, settings):
    sim.add_deployment("shop", "web", replicas=2)
    before = sim.get_deployment("shop", "web")
    restarted_at = kube.now_restarted_at()

    restart = kube.restart_deployment(
        cluster=cluster_for(sim), namespace="shop", name="web", restarted_at=restarted_at
    )

    assert RFC3339_UTC.match(restarted_at)
    (patch,) = [r for r in sim.requests if r.method == "PATCH"]
    assert patch.path == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert patch.query["fieldManager"] == settings.KUBERNETES_FIELD_MANAGER
    assert patch.headers["Authorization"] == f"Bearer {SIM_TOKEN}"
    assert patch.headers["User-Agent"] == settings.KUBERNETES_FIELD_MANAGER
    assert patch.body == {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": restarted_at}}
            }
        }
    }
    after = sim.get_deployment("shop", "web")
    assert (
        restart.generation
        == after["metadata"]["generation"]
        == before["metadata"]["generation"] + 1
    )
    assert restart.resource_version == after["metadata"]["resourceVersion"]
    assert restart.restarted_at == restarted_at


def test_read_errors_become_product_exceptions_with_the_api_message(sim):
    sim.add_deployment("shop", "web")
    with pytest.raises(DeploymentNotFound, match=r"^Deployment does not exist$"):
        kube.get_deployment(cluster=cluster_for(sim), namespace="shop", name="nope")

    sim.forbid("shop")
    with pytest.raises(KubeError) as forbidden:
        kube.get_deployment(cluster=cluster_for(sim), namespace="shop", name="web")
    assert not isinstance(forbidden.value, KubeTransientError)
    assert forbidden.value.message == (
        'deployments.apps "web" is forbidden: User "sim-user" cannot get resource "deployments" '
        'in API group "apps" in the namespace "shop"'
    )

    with pytest.raises(KubeError, match=r"^Unauthorized$"):
        kube.get_deployment(cluster=cluster_for(sim, token="wrong"), namespace="shop", name="web")


def test_transient_errors_are_retried_with_backoff_then_succeed(sim):
    sim.add_deployment("shop", "web")
    sim.fail_next("GET", "/deployments/web$", status=500, times=1)
    sim.fail_next("GET", "/deployments/web$", status=429, times=1, retry_after=1)
    started = time.monotonic()

    found = kube.get_deployment(cluster=cluster_for(sim), namespace="shop", name="web")

    assert found.metadata.name == "web"
    assert len([r for r in sim.requests if r.method == "GET"]) == 3
    assert time.monotonic() - started >= 1  # the 429's Retry-After was honoured


def test_transient_errors_give_up_after_the_bounded_attempts(sim, settings):
    sim.add_deployment("shop", "web")
    sim.fail_next("GET", "/deployments/web$", status=503, times=10)

    with pytest.raises(KubeTransientError, match=r"^Internal error occurred: kubesim injected"):
        kube.get_deployment(cluster=cluster_for(sim), namespace="shop", name="web")

    assert len(sim.requests) == settings.KUBERNETES_RETRY_ATTEMPTS


def test_unreachable_api_is_transient_and_not_in_doubt():
    cluster = KubernetesCluster(name="gone", server="http://127.0.0.1:1", token="x")
    with pytest.raises(KubeTransientError) as refused:
        kube.get_deployment(cluster=cluster, namespace="shop", name="web")
    assert "Connection refused" in refused.value.message
    assert not refused.value.in_doubt


def test_hanging_api_times_out(sim, settings):
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.3
    sim.add_deployment("shop", "web")
    sim.hang_next("GET", "/deployments/web$", seconds=1, times=10)
    started = time.monotonic()

    with pytest.raises(KubeTransientError, match="Read timed out"):
        kube.get_deployment(cluster=cluster_for(sim), namespace="shop", name="web")

    assert time.monotonic() - started < 3


def test_patch_answered_too_late_is_found_applied_and_not_repeated(sim, settings):
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.3
    sim.add_deployment("shop", "web")
    # The API applies this PATCH after 0.4 s, when the client has stopped waiting.
    sim.hang_next("PATCH", "/deployments/web$", seconds=0.4, times=1)
    settings.KUBERNETES_RETRY_BACKOFF = 0.3
    restarted_at = kube.now_restarted_at()

    restart = kube.restart_deployment(
        cluster=cluster_for(sim), namespace="shop", name="web", restarted_at=restarted_at
    )

    assert restart.generation == 2
    assert [r.method for r in sim.requests] == ["PATCH", "GET"]


def test_patch_never_confirmed_is_in_doubt(sim, settings):
    settings.KUBERNETES_REQUEST_TIMEOUT = 0.2
    sim.add_deployment("shop", "web")
    sim.hang_next("PATCH", "/deployments/web$", seconds=3, times=10)

    with pytest.raises(RestartInDoubt, match="it was not repeated"):
        kube.restart_deployment(
            cluster=cluster_for(sim),
            namespace="shop",
            name="web",
            restarted_at=kube.now_restarted_at(),
        )


# A gateway's 502/503/504, or the connection dropped once the request was sent: the PATCH may
# have been applied. Read back, and never a second restart: any PATCH sent again carries the
# same restartedAt, which cannot restart twice.
LOST_ANSWERS = [502, 503, 504, None]
LOST_IDS = ["502", "503", "504", "dropped"]


@pytest.mark.parametrize("status", LOST_ANSWERS, ids=LOST_IDS)
def test_patch_applied_but_its_answer_lost_is_read_back_as_one_restart(sim, status):
    sim.add_deployment("shop", "web")
    sim.answer_after_applying("PATCH", "/deployments/web$", status=status)
    restarted_at = kube.now_restarted_at()

    restart = kube.restart_deployment(
        cluster=cluster_for(sim), namespace="shop", name="web", restarted_at=restarted_at
    )

    assert (restart.restarted_at, restart.generation) == (restarted_at, 2)
    assert [r.method for r in sim.requests] == ["PATCH", "GET"]
    assert sim.get_deployment("shop", "web")["metadata"]["generation"] == 2


@pytest.mark.parametrize("status", LOST_ANSWERS, ids=LOST_IDS)
def test_patch_never_answered_is_in_doubt_and_never_a_second_restart(sim, settings, status):
    sim.add_deployment("shop", "web")
    if status is None:
        sim.drop_next("PATCH", "/deployments/web$", times=10)
    else:
        sim.fail_next("PATCH", "/deployments/web$", status=status, times=10)
    restarted_at = kube.now_restarted_at()

    with pytest.raises(RestartInDoubt, match="it was not repeated"):
        kube.restart_deployment(
            cluster=cluster_for(sim), namespace="shop", name="web", restarted_at=restarted_at
        )

    attempts = settings.KUBERNETES_RETRY_ATTEMPTS
    assert [r.method for r in sim.requests] == ["PATCH", "GET"] * attempts
    bodies = {str(r.body) for r in sim.requests if r.method == "PATCH"}
    assert len(bodies) == 1 and restarted_at in bodies.pop()
    assert sim.get_deployment("shop", "web")["metadata"]["generation"] == 1


def test_patch_refused_by_the_api_is_a_plain_error(sim):
    sim.add_deployment("shop", "web")
    sim.fail_next("PATCH", "/deployments/web$", status=500, times=10)

    with pytest.raises(KubeTransientError) as failed:
        kube.restart_deployment(
            cluster=cluster_for(sim), namespace="shop", name="web", restarted_at="x"
        )

    assert not isinstance(failed.value, RestartInDoubt)
    assert sim.get_deployment("shop", "web")["metadata"]["generation"] == 1


def test_deployment_pages_list_every_deployment_page_by_page(sim, monkeypatch):
    monkeypatch.setattr(kube_client, "LIST_PAGE_SIZE", 2)
    seed_demo(sim)
    sim.add_deployment("tools", "unlabelled", labels={"team": "ops"})

    pages = list(kube.deployment_pages(cluster=cluster_for(sim)))

    assert [len(page) for page in pages] == [2, 2, 2]
    names = {(d["metadata"]["namespace"], d["metadata"]["name"]) for page in pages for d in page}
    assert names == {(namespace, name) for namespace, name, *_ in DEMO} | {("tools", "unlabelled")}


def test_tls_with_ca_and_client_certificate():
    with KubeSimulator(client_cert=True, rollout_step_seconds=0.1) as sim:
        sim.add_deployment("shop", "web")
        cluster = KubernetesCluster(
            name="tls",
            server=sim.url,
            ca_data=sim.ca_pem,
            client_cert_data=sim.client_cert_pem,
            client_key_data=sim.client_key_pem,
        )
        assert kube.get_deployment(cluster=cluster, namespace="shop", name="web").metadata.name

        untrusted = KubernetesCluster(name="tls", server=sim.url, token="x")
        with pytest.raises(KubeError, match="CERTIFICATE_VERIFY_FAILED"):
            kube.get_deployment(cluster=untrusted, namespace="shop", name="web")


def test_stored_kubeconfig_and_context(sim, tmp_path):
    sim.add_deployment("shop", "web")
    path = sim.kubeconfig(tmp_path / "config", context="lab")
    cluster = KubernetesCluster(name="lab", kubeconfig=path.read_text(), kubeconfig_context="lab")

    assert kube.get_deployment(cluster=cluster, namespace="shop", name="web").metadata.name == "web"


def test_a_list_reads_the_next_page_ahead_and_raises_its_failure_when_taken():
    asked = []

    def list_page(*, _continue, **options):
        asked.append(_continue)
        if _continue == "page-2":
            raise ApiException(status=410, reason="Gone")
        page = {"items": [{"metadata": {"name": "web"}}], "metadata": {"continue": "page-2"}}
        return SimpleNamespace(data=json.dumps(page).encode())

    pages = kube_client._pages(list_page, label_selector="", what="LIST deployments", raw=True)

    assert next(pages) == [{"metadata": {"name": "web"}}]
    with pytest.raises(KubeError, match="Gone"):
        next(pages)
    assert asked == [None, "page-2"]
