"""import_cluster and sync_applications through a real kubeconfig file written by the simulator."""

from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from redeploy import kube
from redeploy.kubesim import DEMO, KubeSimulator, seed_demo
from redeploy.models import Application, AuditEvent, DeploymentBinding, KubernetesCluster
from tests.factories import ApplicationFactory
from tests.redeploy.conftest import SIM_TOKEN

pytestmark = pytest.mark.django_db


def command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_import_cluster_with_a_token(sim, tmp_path):
    path = sim.kubeconfig(tmp_path / "config", context="lab")

    output = command("import_cluster", "lab", "--kubeconfig", str(path))

    cluster = KubernetesCluster.objects.get(name="lab")
    assert output.strip() == f"Registered cluster lab ({sim.url})"
    assert (cluster.server, cluster.token, cluster.kubeconfig) == (sim.url, SIM_TOKEN, "")
    event = AuditEvent.objects.get(action="cluster.imported")
    assert event.cluster_name == "lab"
    assert SIM_TOKEN not in event.message
    # The stored credentials work.
    sim.add_deployment("shop", "web")
    assert kube.get_deployment(cluster=cluster, namespace="shop", name="web").metadata.name == "web"


def test_import_cluster_with_a_client_certificate_updates_the_same_cluster(sim, tmp_path):
    command("import_cluster", "lab", "--kubeconfig", str(sim.kubeconfig(tmp_path / "a")))
    with KubeSimulator(client_cert=True) as tls:
        tls.add_deployment("shop", "web")
        path = tls.kubeconfig(tmp_path / "b", context="tls")

        output = command("import_cluster", "lab", "--kubeconfig", str(path), "--context", "tls")

        cluster = KubernetesCluster.objects.get()
        assert output.startswith("Updated cluster lab")
        assert (cluster.server, cluster.token) == (tls.url, "")
        assert (cluster.ca_data, cluster.client_cert_data, cluster.client_key_data) == (
            tls.ca_pem,
            tls.client_cert_pem,
            tls.client_key_pem,
        )
        assert kube.get_deployment(cluster=cluster, namespace="shop", name="web")
    assert AuditEvent.objects.filter(action="cluster.imported").count() == 2


def test_import_cluster_keeps_a_context_it_cannot_split_whole(sim, tmp_path):
    path = sim.kubeconfig(tmp_path / "config", context="lab")
    config = yaml.safe_load(path.read_text())
    config["clusters"][0]["cluster"]["tls-server-name"] = "kubernetes"
    path.write_text(yaml.safe_dump(config))

    command("import_cluster", "lab", "--kubeconfig", str(path))

    cluster = KubernetesCluster.objects.get(name="lab")
    assert cluster.kubeconfig_context == "lab"
    assert yaml.safe_load(cluster.kubeconfig)["users"][0]["user"]["token"] == SIM_TOKEN
    sim.add_deployment("shop", "web")
    assert kube.get_deployment(cluster=cluster, namespace="shop", name="web")


def test_import_cluster_refuses_what_it_cannot_read(sim, tmp_path):
    with pytest.raises(CommandError, match="has no context named nope"):
        command(
            "import_cluster",
            "lab",
            "--kubeconfig",
            str(sim.kubeconfig(tmp_path / "c")),
            "--context",
            "nope",
        )
    with pytest.raises(CommandError, match="Cannot read"):
        command("import_cluster", "lab", "--kubeconfig", str(tmp_path / "missing"))
    assert not KubernetesCluster.objects.exists()


def test_sync_applications_is_idempotent(sim, tmp_path):
    seed_demo(sim)
    command("import_cluster", "lab", "--kubeconfig", str(sim.kubeconfig(tmp_path / "config")))
    ApplicationFactory(name="web", tags=[{"key": "owner", "value": "ana"}])

    first = command("sync_applications", "--cluster", "lab")
    second = command("sync_applications", "--cluster", "lab")

    demo = {(namespace, name) for namespace, name, *_ in DEMO}
    assert set(Application.objects.values_list("name", flat=True)) == {n for _, n in demo}
    assert set(
        DeploymentBinding.objects.values_list("cluster__name", "namespace", "deployment_name")
    ) == {("lab", ns, name) for ns, name in demo}
    web = Application.objects.get(name="web")
    assert web.tags[0] == {"key": "owner", "value": "ana"}  # kept
    assert {"key": "team", "value": "storefront"} in web.tags
    assert all(tag["key"] != "app.kubernetes.io/name" for tag in web.tags)
    count = len(demo)
    assert first.strip() == (
        f"Cluster lab: {count} Deployment(s); applications {count - 1} created, 1 updated, "
        f"0 unchanged; bindings {count} created, 0 already present."
    )
    assert second.strip() == (
        f"Cluster lab: {count} Deployment(s); applications 0 created, 0 updated, "
        f"{count} unchanged; bindings 0 created, {count} already present."
    )
    assert AuditEvent.objects.filter(action="applications.synced").count() == 2


def test_sync_applications_with_another_label(sim, tmp_path):
    seed_demo(sim)
    command("import_cluster", "lab", "--kubeconfig", str(sim.kubeconfig(tmp_path / "config")))

    command("sync_applications", "--cluster", "lab", "--label", "app.kubernetes.io/part-of")

    assert set(Application.objects.values_list("name", flat=True)) == {"shop", "payments"}
    shop = Application.objects.get(name="shop")
    assert shop.bindings.count() == 3


def test_sync_applications_needs_a_known_cluster():
    with pytest.raises(CommandError, match="No cluster is named nope"):
        command("sync_applications", "--cluster", "nope")
