"""sync_applications page by page against the simulator: bulk writes, Deployments gone."""

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cratos.audit.models import AuditEvent
from redeploy.application_sync import sync_applications
from redeploy.exceptions import KubeError
from redeploy.kube import client as kube_client
from redeploy.models import Application, DeploymentBinding
from tests.factories import ApplicationFactory, BindingFactory, RedeployTargetFactory
from tests.kubesim import seed_demo
from tests.redeploy.conftest import SIM_TOKEN

pytestmark = pytest.mark.django_db

NAME = "app.kubernetes.io/name"
PART_OF = "app.kubernetes.io/part-of"


@pytest.fixture
def pages_of(monkeypatch):
    def set_size(size: int) -> None:
        monkeypatch.setattr(kube_client, "LIST_PAGE_SIZE", size)

    return set_size


def delete_deployment(sim, namespace: str, name: str) -> None:
    response = requests.delete(
        f"{sim.url}/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()


def bindings() -> set[tuple[str, str, str]]:
    return set(
        DeploymentBinding.objects.values_list("application__name", "namespace", "deployment_name")
    )


def test_an_application_spread_over_pages_ends_as_if_read_at_once(sim, cluster, pages_of):
    pages_of(2)
    for namespace, tier, team in [("a", "front", "shop"), ("b", "back", "pay"), ("c", "x", "")]:
        labels = {NAME: "web", "tier": tier, **({PART_OF: team} if team else {})}
        sim.add_deployment(namespace, "web", labels=labels)
    sim.add_deployment("a", "api", labels={NAME: "api", PART_OF: "shop"})

    summary = sync_applications(cluster_name="sim")

    web = Application.objects.get(name="web")
    assert web.tags == [
        {"key": "tier", "value": "front"},
        {"key": "app.kubernetes.io/part-of", "value": "shop"},
    ]
    assert sorted(web.owner_teams.values_list("name", flat=True)) == ["pay", "shop"]
    assert bindings() == {
        ("web", "a", "web"),
        ("web", "b", "web"),
        ("web", "c", "web"),
        ("api", "a", "api"),
    }
    assert (summary.pages, summary.deployments) == (2, 4)
    assert (summary.applications_created, summary.owners_set, summary.teams_created) == (2, 2, 2)


def sync_queries(sim, namespace: str, deployments: int) -> int:
    for index in range(deployments):
        labels = {NAME: f"{namespace}-{index}", PART_OF: f"team-{namespace}", "tier": "web"}
        sim.add_deployment(namespace, f"d{index}", labels=labels)
    with CaptureQueriesContext(connection) as queries:
        summary = sync_applications(cluster_name="sim", namespaces=[namespace])
    assert summary.pages == 4
    return len(queries)


def test_a_page_costs_the_same_queries_whatever_its_size(sim, cluster, pages_of):
    pages_of(2)
    small = sync_queries(sim, "small", 8)
    pages_of(25)
    large = sync_queries(sim, "large", 100)

    assert large == small
    assert Application.objects.count() == 108
    assert DeploymentBinding.objects.count() == 108
    # Per page: applications read and upserted, teams read (and created on the first page),
    # owners read and inserted, bindings inserted; around them the bindings read, the event.
    assert small <= 4 * 7 + 6


def test_a_deployment_that_disappeared_is_unbound(sim, cluster):
    seed_demo(sim)
    sync_applications(cluster_name="sim")
    delete_deployment(sim, "shop", "web")
    delete_deployment(sim, "payments", "ledger")

    summary = sync_applications(cluster_name="sim")

    assert ("web", "shop", "web") not in bindings()
    assert ("ledger", "payments", "ledger") not in bindings()
    assert len(bindings()) == 3
    assert summary.unbound == ["payments/ledger (ledger)", "shop/web (web)"]
    # The application stays, with its tickets; it runs nowhere now.
    assert not Application.objects.get(name="web").bindings.exists()
    event = AuditEvent.objects.filter(action="applications.synced").latest("pk")
    assert "2 unbound (Deployment gone)" in event.message
    assert event.message.endswith("Unbound: payments/ledger (ledger), shop/web (web).")

    sim.add_deployment("shop", "web")
    again = sync_applications(cluster_name="sim")

    assert ("web", "shop", "web") in bindings()
    assert (again.bindings_created, again.unbound) == (1, [])


def test_an_operation_under_way_keeps_its_target_when_its_deployment_is_unbound(sim, cluster):
    sim.add_deployment("shop", "web")
    sync_applications(cluster_name="sim")
    binding = DeploymentBinding.objects.get()
    target = RedeployTargetFactory(binding=binding, cluster_name="sim", running=True)
    delete_deployment(sim, "shop", "web")

    sync_applications(cluster_name="sim")

    target.refresh_from_db()
    assert target.binding is None
    assert (target.state, target.cluster_name, target.namespace, target.deployment_name) == (
        "ROLLING",
        "sim",
        "shop",
        "web",
    )


def test_a_deployment_still_there_keeps_its_binding_without_the_label(sim, cluster):
    sim.add_deployment("tools", "legacy", labels={"team": "ops"})
    BindingFactory(
        application=ApplicationFactory(name="legacy"),
        cluster=cluster,
        namespace="tools",
        deployment_name="legacy",
    )

    summary = sync_applications(cluster_name="sim")

    assert bindings() == {("legacy", "tools", "legacy")}
    assert (summary.deployments, summary.unbound) == (0, [])


def test_only_the_namespaces_synced_are_unbound(sim, cluster):
    seed_demo(sim)
    sync_applications(cluster_name="sim")
    delete_deployment(sim, "shop", "web")
    delete_deployment(sim, "payments", "ledger")

    summary = sync_applications(cluster_name="sim", namespaces=["payments"])

    assert summary.unbound == ["payments/ledger (ledger)"]
    assert ("web", "shop", "web") in bindings()


def test_a_list_that_fails_half_way_unbinds_nothing(sim, cluster):
    seed_demo(sim)
    sync_applications(cluster_name="sim")
    delete_deployment(sim, "shop", "web")
    sim.add_deployment("shop", "new")
    sim.forbid("payments")

    with pytest.raises(KubeError, match='cannot list resource "deployments"'):
        sync_applications(cluster_name="sim", namespaces=["shop", "payments"])

    assert ("web", "shop", "web") in bindings()
    assert not Application.objects.filter(name="new").exists()
