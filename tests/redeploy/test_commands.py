"""import_cluster and sync_applications through a real kubeconfig file written by the simulator."""

from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from cratos.audit.models import AuditEvent
from redeploy import kube
from redeploy.application_sync import managed_by
from redeploy.exceptions import KubeError
from redeploy.models import Application, DeploymentBinding, KubernetesCluster
from tests.factories import ApplicationFactory
from tests.kubesim import DEMO, KubeSimulator, seed_demo
from tests.redeploy.conftest import SIM_TOKEN

pytestmark = pytest.mark.django_db


def command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_import_cluster_with_a_token(sim, tmp_path):
    path = sim.kubeconfig(tmp_path / "config", context="lab")

    output = command("import_cluster", "lab", "--allow-plain-http", "--kubeconfig", str(path))

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
    command(
        "import_cluster",
        "lab",
        "--allow-plain-http",
        "--kubeconfig",
        str(sim.kubeconfig(tmp_path / "a")),
    )
    with KubeSimulator(client_cert=True) as tls:
        tls.add_deployment("shop", "web")
        path = tls.kubeconfig(tmp_path / "b", context="tls")

        output = command(
            "import_cluster",
            "lab",
            "--allow-plain-http",
            "--kubeconfig",
            str(path),
            "--context",
            "tls",
        )

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

    command("import_cluster", "lab", "--allow-plain-http", "--kubeconfig", str(path))

    cluster = KubernetesCluster.objects.get(name="lab")
    assert cluster.kubeconfig_context == "lab"
    assert yaml.safe_load(cluster.kubeconfig)["users"][0]["user"]["token"] == SIM_TOKEN
    sim.add_deployment("shop", "web")
    assert kube.get_deployment(cluster=cluster, namespace="shop", name="web")


def test_import_cluster_refuses_a_plain_http_server_unless_allowed(sim, tmp_path):
    path = sim.kubeconfig(tmp_path / "config", context="lab")

    with pytest.raises(CommandError, match=r"speaks plain HTTP .*--allow-plain-http"):
        command("import_cluster", "lab", "--kubeconfig", str(path))

    assert not KubernetesCluster.objects.exists()
    assert not AuditEvent.objects.exists()
    command("import_cluster", "lab", "--allow-plain-http", "--kubeconfig", str(path))
    assert KubernetesCluster.objects.get(name="lab").allow_plain_http


def test_the_worker_never_sends_credentials_to_a_plain_http_server_not_opted_in(sim):
    cluster = KubernetesCluster.objects.create(
        name="lab", server=sim.url, token=SIM_TOKEN, allow_plain_http=False
    )
    sim.add_deployment("shop", "web")

    with pytest.raises(KubeError, match="speaks plain HTTP"):
        kube.get_deployment(cluster=cluster, namespace="shop", name="web")

    assert sim.requests == []


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
        command(
            "import_cluster", "lab", "--allow-plain-http", "--kubeconfig", str(tmp_path / "missing")
        )
    assert not KubernetesCluster.objects.exists()


def test_sync_applications_is_idempotent(sim, tmp_path):
    seed_demo(sim)
    command(
        "import_cluster",
        "lab",
        "--allow-plain-http",
        "--kubeconfig",
        str(sim.kubeconfig(tmp_path / "config")),
    )
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
        f"0 unchanged; bindings {count} created, 0 already present, 0 unbound (Deployment gone); "
        f"owners set on {count}, teams 2 created."
    )
    assert second.strip() == (
        f"Cluster lab: {count} Deployment(s); applications 0 created, 0 updated, "
        f"{count} unchanged; bindings 0 created, {count} already present, 0 unbound (Deployment "
        "gone); owners set on 0, teams 0 created."
    )
    assert AuditEvent.objects.filter(action="applications.synced").count() == 2


def test_sync_stores_what_the_pages_show_of_each_deployment(sim, tmp_path):
    sim.add_deployment("shop", "web", replicas=3)
    sim.add_deployment(
        "shop", "api", labels={"app.kubernetes.io/name": "api", "argocd.argoproj.io/instance": "x"}
    )
    sim.add_deployment(
        "ops",
        "cron",
        paused=True,
        labels={"app.kubernetes.io/name": "cron", "app.kubernetes.io/managed-by": "Helm"},
    )
    command(
        "import_cluster",
        "lab",
        "--allow-plain-http",
        "--kubeconfig",
        str(sim.kubeconfig(tmp_path / "config")),
    )

    command("sync_applications", "--cluster", "lab")

    seen = {
        b.deployment_name: (b.ready_replicas, b.desired_replicas, b.paused, b.managed_by)
        for b in DeploymentBinding.objects.all()
    }
    assert seen == {
        "web": (3, 3, False, ""),
        "api": (1, 1, False, "Argo CD"),
        "cron": (1, 1, True, "Helm"),
    }
    assert all(b.seen_at for b in DeploymentBinding.objects.all())


@pytest.mark.parametrize(
    ("labels", "annotations", "manager"),
    [
        ({}, {"argocd.argoproj.io/tracking-id": "app:apps/Deployment:shop/web"}, "Argo CD"),
        ({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}, "Flux"),
        ({"helm.toolkit.fluxcd.io/name": "web"}, {"meta.helm.sh/release-name": "web"}, "Flux"),
        ({}, {"meta.helm.sh/release-name": "web"}, "Helm"),
        ({"app.kubernetes.io/managed-by": "Helm"}, {}, "Helm"),
        ({"app.kubernetes.io/managed-by": "kustomize"}, None, ""),
        (None, None, ""),
    ],
)
def test_who_manages_a_deployment_is_read_from_its_marks(labels, annotations, manager):
    assert managed_by(labels=labels, annotations=annotations) == manager


def test_sync_applications_with_another_label(sim, tmp_path):
    seed_demo(sim)
    command(
        "import_cluster",
        "lab",
        "--allow-plain-http",
        "--kubeconfig",
        str(sim.kubeconfig(tmp_path / "config")),
    )

    command("sync_applications", "--cluster", "lab", "--label", "app.kubernetes.io/part-of")

    assert set(Application.objects.values_list("name", flat=True)) == {"shop", "payments"}
    shop = Application.objects.get(name="shop")
    assert shop.bindings.count() == 3


def test_sync_applications_needs_a_known_cluster():
    with pytest.raises(CommandError, match="No cluster is named nope"):
        command("sync_applications", "--cluster", "nope")


# -- import_cluster --in-cluster ---------------------------------------------------------------


def test_import_cluster_in_cluster_needs_no_kubeconfig():
    output = command("import_cluster", "local", "--in-cluster")

    cluster = KubernetesCluster.objects.get(name="local")
    assert output.strip() == "Registered cluster local (in-cluster)"
    assert cluster.in_cluster
    assert (cluster.server, cluster.token, cluster.kubeconfig) == ("", "", "")
    event = AuditEvent.objects.get(action="cluster.imported")
    assert (event.cluster_name, event.outcome) == ("local", "SUCCESS")
    assert "in-cluster" in event.message


def test_import_cluster_in_cluster_drops_the_stored_credentials(sim, tmp_path, monkeypatch):
    path = sim.kubeconfig(tmp_path / "config")
    command("import_cluster", "lab", "--allow-plain-http", "--kubeconfig", str(path))
    sim.add_deployment("shop", "web")

    output = command("import_cluster", "lab", "--in-cluster")

    cluster = KubernetesCluster.objects.get()
    assert output.strip() == "Updated cluster lab (in-cluster)"
    assert cluster.in_cluster
    assert (cluster.server, cluster.ca_data, cluster.token) == ("", "", "")
    assert (cluster.client_cert_data, cluster.client_key_data, cluster.kubeconfig) == ("", "", "")
    # The worker now uses the pod's ServiceAccount: outside a pod there is none to use.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(kube.KubeError, match="configuration of cluster lab is not usable"):
        kube.get_deployment(cluster=cluster, namespace="shop", name="web")
    # And back to the kubeconfig.
    command("import_cluster", "lab", "--allow-plain-http", "--kubeconfig", str(path))
    cluster.refresh_from_db()
    assert not cluster.in_cluster
    assert kube.get_deployment(cluster=cluster, namespace="shop", name="web")
    assert AuditEvent.objects.filter(action="cluster.imported", cluster_name="lab").count() == 3


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "one of the arguments --kubeconfig --in-cluster is required"),
        (("--in-cluster", "--kubeconfig", "config"), "not allowed with argument"),
        (("--in-cluster", "--context", "lab"), "give --kubeconfig with it"),
    ],
)
def test_import_cluster_takes_a_kubeconfig_or_in_cluster(args, message):
    with pytest.raises(CommandError, match=message):
        command("import_cluster", "lab", *args)
    assert not KubernetesCluster.objects.exists()
    assert not AuditEvent.objects.exists()


# -- sync_applications --namespace -------------------------------------------------------------


def deployment_lists(sim) -> list[str]:
    """The paths of the LIST requests for Deployments the simulator received."""
    return [
        request.path
        for request in sim.requests
        if request.method == "GET" and request.path.rstrip("/").endswith("/deployments")
    ]


@pytest.fixture
def demo_cluster(sim, tmp_path):
    """The demo Deployments plus one in a namespace nobody named, and the cluster imported."""
    seed_demo(sim)
    sim.add_deployment("kube-system", "coredns")
    command(
        "import_cluster",
        "lab",
        "--allow-plain-http",
        "--kubeconfig",
        str(sim.kubeconfig(tmp_path / "config")),
    )
    sim.reset_requests()
    return sim


def test_sync_applications_lists_every_namespace_at_once_by_default(demo_cluster):
    command("sync_applications", "--cluster", "lab")

    assert deployment_lists(demo_cluster) == ["/apis/apps/v1/deployments"]
    assert Application.objects.filter(name="coredns").exists()


def test_sync_applications_in_named_namespaces_lists_only_those(demo_cluster):
    output = command(
        "sync_applications", "--cluster", "lab", "--namespace", "shop", "--namespace", "payments"
    )

    assert deployment_lists(demo_cluster) == [
        "/apis/apps/v1/namespaces/shop/deployments",
        "/apis/apps/v1/namespaces/payments/deployments",
    ]
    demo = {(namespace, name) for namespace, name, *_ in DEMO}
    assert set(Application.objects.values_list("name", flat=True)) == {n for _, n in demo}
    assert set(DeploymentBinding.objects.values_list("namespace", "deployment_name")) == demo
    count = len(demo)
    assert output.strip() == (
        f"Cluster lab (namespaces shop, payments): {count} Deployment(s); applications "
        f"{count} created, 0 updated, 0 unchanged; bindings {count} created, 0 already present, "
        f"0 unbound (Deployment gone); owners set on {count}, teams 2 created."
    )
    event = AuditEvent.objects.get(action="applications.synced")
    assert "namespaces shop, payments" in event.message


def test_sync_applications_in_one_namespace_leaves_the_others_alone(demo_cluster):
    command(
        "sync_applications",
        "--cluster",
        "lab",
        "--namespace",
        "payments",
        "--namespace",
        "payments",
    )

    assert deployment_lists(demo_cluster) == ["/apis/apps/v1/namespaces/payments/deployments"]
    assert set(DeploymentBinding.objects.values_list("namespace", flat=True)) == {"payments"}


def test_sync_applications_fails_whole_when_a_namespace_may_not_be_listed(demo_cluster):
    demo_cluster.forbid("payments")

    with pytest.raises(CommandError, match='cannot list resource "deployments"'):
        command(
            "sync_applications",
            "--cluster",
            "lab",
            "--namespace",
            "shop",
            "--namespace",
            "payments",
        )

    assert not Application.objects.exists()
    assert not AuditEvent.objects.filter(action="applications.synced").exists()


def test_sync_applications_refuses_a_namespace_that_is_no_name(demo_cluster):
    with pytest.raises(CommandError, match="Namespace 'Shop_1'"):
        command("sync_applications", "--cluster", "lab", "--namespace", "Shop_1")

    assert deployment_lists(demo_cluster) == []
    assert not Application.objects.exists()


def test_import_cluster_in_cluster_needs_a_name():
    with pytest.raises(CommandError, match=r"Give the cluster a name\."):
        command("import_cluster", "  ", "--in-cluster")
    assert not KubernetesCluster.objects.exists()
