"""A batch of redeploys across clusters (redeploy.restarts): each cluster's restarts go out as
soon as its own Deployments were read, whatever another cluster does, and starting a batch
costs the same queries however long it is."""

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from redeploy import redeploys, restarts
from redeploy.models import RedeployOperation, RedeployTarget
from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import ApplicationFactory, BindingFactory, ClusterFactory, TicketFactory
from tests.kubesim import KubeSimulator
from tests.redeploy.conftest import SIM_TOKEN
from tickets import grants

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_sim():
    with KubeSimulator(token=SIM_TOKEN, rollout_step_seconds=0.1) as simulator:
        yield simulator


def batch(requester, approver, placed: dict[str, KubeSimulator]) -> list[RedeployOperation]:
    """alice's approved batch: application NAME's Deployment NAME in namespace shop, in the
    cluster named after each simulator (`placed`: application -> simulator)."""
    clusters = {}
    applications = []
    for name, simulator in placed.items():
        cluster = clusters.get(simulator.url)
        if cluster is None:
            cluster = clusters[simulator.url] = ClusterFactory(
                name=f"c{len(clusters)}-{simulator.port}", server=simulator.url, token=SIM_TOKEN
            )
        simulator.add_deployment("shop", name)
        application = ApplicationFactory(name=name)
        BindingFactory(
            application=application, cluster=cluster, namespace="shop", deployment_name=name
        )
        applications.append(application)
    TicketFactory(applicant=requester, applications=applications, approved_by=approver)
    return redeploys.request_redeploys(
        user=requester,
        items=[
            redeploys.RedeployRequest(application_name=name, namespace="shop", deployment_name=name)
            for name in placed
        ],
    )


def patched(simulator: KubeSimulator) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in simulator.requests if r.method == "PATCH"]


def test_a_cluster_that_hangs_does_not_hold_back_the_others_restarts(
    requester, approver, sim, other_sim, settings
):
    # One thread per cluster, and reads that would hang far longer than the test waits.
    settings.KUBERNETES_PARALLEL_REQUESTS = 1
    settings.KUBERNETES_REQUEST_TIMEOUT = 60
    settings.KUBERNETES_RETRY_ATTEMPTS = 1
    operations = batch(requester, approver, {"stuck": sim, "web": other_sim, "api": other_sim})
    sim.hang_next("GET", seconds=60, times=10)
    seen = {}

    def watch_the_healthy_cluster():
        deadline = time.monotonic() + 20
        while len(patched(other_sim)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Its restarts were sent while the other cluster still had not answered a read.
        seen["patched"] = sorted(patched(other_sim))
        seen["stuck_answered"] = any(r.method == "PATCH" for r in sim.requests)
        sim.forbid("shop")
        sim.stop()  # the hanging read ends, refused

    watcher = threading.Thread(target=watch_the_healthy_cluster)
    watcher.start()
    done = restarts.run_redeploys(operation_ids=[o.pk for o in operations], task_id="batch")
    watcher.join()

    assert seen == {"patched": ["api", "web"], "stuck_answered": False}
    states = {o.application_name: [t.state for t in o.targets.all()] for o in done}
    assert states["web"] == states["api"] == [RedeployTarget.State.ROLLING]
    stuck = next(o for o in done if o.application_name == "stuck")
    assert stuck.state == RedeployOperation.State.FAILED
    # Nothing applied there: the authorization goes back.
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="stuck")


def test_a_batch_across_clusters_restarts_each_in_its_cluster(requester, approver, sim, other_sim):
    operations = batch(
        requester, approver, {"web": sim, "api": other_sim, "cart": sim, "mail": other_sim}
    )

    done = restarts.run_redeploys(operation_ids=[o.pk for o in operations], task_id="batch")

    assert sorted(patched(sim)) == ["cart", "web"]
    assert sorted(patched(other_sim)) == ["api", "mail"]
    assert {t.state for o in done for t in o.targets.all()} == {RedeployTarget.State.ROLLING}


def test_starting_a_batch_costs_the_same_queries_however_long(requester, approver, sim, other_sim):
    def queries_to_start(names: list[str]) -> int:
        operations = batch(
            requester, approver, {name: (sim, other_sim)[i % 2] for i, name in enumerate(names)}
        )
        with CaptureQueriesContext(connection) as queries:
            restarts._start(operation_ids=[o.pk for o in operations], task_id="start")
        assert RedeployTarget.objects.filter(operation__in=operations).count() == len(names)
        return len(queries)

    assert queries_to_start(["a1", "a2"]) == queries_to_start([f"b{i}" for i in range(12)])
