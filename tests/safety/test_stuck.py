"""Work that would stay stuck: each fault, injected at its step against the real services (real
Celery worker processes, PostgreSQL, Redis, the broker, the Kubernetes-API simulator), ends
with the operation settled, its audit events, and exactly one restart (or none that landed).

What finishes the work: the task's own retry (the database connection cut after the PATCH) or
the reconciler (redeploy.settle_stuck_operations, published here as beat does), run by a worker
whose OPERATION_STUCK_AFTER_SECONDS is 1.
"""

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from redeploy import kube, pod_deletions, redeploys, tasks
from redeploy.models import PodDeletion, RedeployOperation, RedeployTarget
from redeploy.providers import REDEPLOY_GRANTS
from tests.support import assert_grant_ttl, audit_actions
from tickets.models import Ticket, TicketEntry

from .test_faults import kill, patches, wait_for

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
POD_KEY = "APPLICATION:DELETE:POD:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
WORKER = {
    "KUBERNETES_REQUEST_TIMEOUT": "10",
    "KUBERNETES_RETRY_BACKOFF": "0.05",
    "REDEPLOY_ROLLOUT_POLL_SECONDS": "0.3",
}
RECONCILER = WORKER | {"OPERATION_STUCK_AFTER_SECONDS": "1"}

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def request(user) -> RedeployOperation:
    return redeploys.request_redeploy(
        user=user, application_name="web", namespace="shop", deployment_name="web"
    )


def finished(operation, worker, seconds: float = 30) -> RedeployOperation:
    wait_for(
        lambda: RedeployOperation.objects.get(pk=operation.pk).is_finished,
        "settling the operation",
        seconds=seconds,
        log=lambda: worker.log,
    )
    return RedeployOperation.objects.get(pk=operation.pk)


def stuck_since(killed_at: float) -> None:
    """Waits until the operation, untouched since its worker was killed, has been stuck for
    longer than the reconciler's OPERATION_STUCK_AFTER_SECONDS (mostly passed while the
    reconciler started)."""
    time.sleep(max(0.0, killed_at + 1.1 - time.monotonic()))


def reconcile_now() -> None:
    """What beat does every minute: publish the reconciler's task."""
    tasks.settle_stuck_operations.apply_async()


def deletes(sim) -> list:
    return [r for r in sim.requests if r.method == "DELETE"]


def generation(sim) -> int:
    return sim.get_deployment("shop", "web")["metadata"]["generation"]


def restart_landed(sim) -> bool:
    annotations = sim.get_deployment("shop", "web")["spec"]["template"]["metadata"]
    return bool(annotations.get("annotations", {}).get(RESTARTED_AT))


def assert_succeeded_once(operation, sim, approved_ticket, redis_client) -> None:
    assert operation.state == RedeployOperation.State.SUCCEEDED
    assert len(patches(sim)) == 1
    assert generation(sim) == 2
    actions = audit_actions(operation=operation)
    assert actions.count("authorization.consumed") == 1
    assert actions.count("redeploy.succeeded") == 1
    assert actions.count("rollout.complete") == 1
    assert "authorization.restored" not in actions
    assert redis_client.exists(KEY) == 0
    approved_ticket.refresh_from_db()
    assert (approved_ticket.state, approved_ticket.success) == (Ticket.State.COMPLETED, True)
    assert approved_ticket.entries.get().state == TicketEntry.State.USED


def cut_database_connections() -> int:
    """Terminate every other session on the test database (the worker's), as a database
    failover or a network cut does."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return len(cursor.fetchall())


def gets(sim) -> list:
    return [r for r in sim.requests if r.method == "GET"]


def test_the_database_cut_after_the_patch_and_before_the_record(
    start_worker, requester, approved_ticket, binding, sim, redis_client
):
    """The PATCH is applied while the worker's database connection is cut: recording it fails,
    the task is retried with backoff, and the retry finds the restart on the Deployment."""
    sim.hang_next("PATCH", "/deployments/web$", seconds=2, times=1)
    worker = start_worker(**WORKER)

    operation = request(requester)
    wait_for(lambda: patches(sim), "the PATCH", log=lambda: worker.log)
    assert cut_database_connections() >= 1

    operation = finished(operation, worker)

    assert "Retry in" in worker.log
    assert_succeeded_once(operation, sim, approved_ticket, redis_client)


def test_the_database_cut_before_the_claim(
    start_worker, requester, approved_ticket, binding, sim, redis_client
):
    """Cut while the Deployment is read, before the restart is claimed: the claim fails, the
    task is retried, and the retry restarts it, once."""
    sim.hang_next("GET", "/deployments/web$", seconds=2, times=1)
    worker = start_worker(**WORKER)

    operation = request(requester)
    wait_for(lambda: gets(sim), "the GET", log=lambda: worker.log)
    assert cut_database_connections() >= 1

    operation = finished(operation, worker)

    assert "Retry in" in worker.log
    assert_succeeded_once(operation, sim, approved_ticket, redis_client)


def test_the_database_cut_while_the_rollout_is_followed(
    start_worker, requester, approved_ticket, binding, sim, redis_client
):
    """Cut during a look at the rollout: that look is lost, the next one (a new task, a new
    connection) decides."""
    worker = start_worker(**WORKER)
    # The follow-up's first look is a LIST of the namespace (then it watches); the restart
    # itself reads one Deployment. Hung from the start, so the follow-up cannot pass it before
    # the test looks.
    sim.hang_next("GET", "/namespaces/shop/deployments$", seconds=1, times=1)
    operation = request(requester)
    wait_for(
        lambda: RedeployTarget.objects.filter(
            operation=operation, state=RedeployTarget.State.ROLLING
        ).exists(),
        "the restart recorded",
        log=lambda: worker.log,
    )
    wait_for(
        lambda: [r for r in gets(sim) if r.path.endswith("/namespaces/shop/deployments")],
        "a look at the rollout",
        log=lambda: worker.log,
    )
    cut_database_connections()
    assert RedeployOperation.objects.get(pk=operation.pk).state == "RUNNING"  # cut mid-follow

    operation = finished(operation, worker)

    assert_succeeded_once(operation, sim, approved_ticket, redis_client)


@pytest.mark.parametrize("lands", [True, False], ids=["patch-landed", "patch-never-landed"])
def test_a_worker_killed_whose_message_is_never_delivered_again(
    start_worker, broker, requester, approved_ticket, binding, sim, redis_client, lands
):
    """Killed in the PATCH, and its message lost: the reconciler settles the operation from
    the Deployment: the restart followed if it landed, else failed with the grant back."""
    remaining = redis_client.ttl(KEY)
    sim.hang_next("PATCH", "/deployments/web$", seconds=1.0 if lands else 120, times=1)
    first = start_worker(**WORKER)
    operation = request(requester)
    wait_for(lambda: patches(sim), "the PATCH", log=lambda: first.log)
    kill(first)
    killed_at = time.monotonic()
    broker.flushdb()  # the message is lost for good
    if lands:
        wait_for(lambda: restart_landed(sim), "the hung PATCH landing")
    reconciler = start_worker(**RECONCILER)
    stuck_since(killed_at)

    reconcile_now()

    operation = finished(operation, reconciler)
    if lands:
        assert_succeeded_once(operation, sim, approved_ticket, redis_client)
        return
    target = operation.targets.get()
    assert (operation.state, target.restarted_at) == (RedeployOperation.State.FAILED, "")
    assert "never reached the Deployment; nothing was applied" in target.message
    assert generation(sim) == 1
    assert_grant_ttl(redis_client, KEY, remaining, elapsed=180)  # workers start slowly
    assert audit_actions(operation=operation)[-2:] == ["redeploy.failed", "authorization.restored"]
    assert approved_ticket.entries.get().state == TicketEntry.State.AUTHORIZED


class BrokerLine:
    """A TCP relay between a worker and the broker, which the test can cut: the broker away
    for that worker only."""

    def __init__(self, target_url: str):
        self.target = urlsplit(target_url)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = urlunsplit(self.target._replace(netloc=f"127.0.0.1:{self.port}"))
        self.up = True
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection((self.target.hostname, self.target.port))
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_the_broker_away_when_the_rollout_is_to_be_followed(
    start_worker, requester, approved_ticket, binding, sim, redis_client
):
    """The restart is applied and recorded, but the follow-up task cannot be published: the
    rollout is nobody's. The reconciler decides it once its deadline passed."""
    line = BrokerLine(settings.TEST_SAFETY_BROKER_URL)
    sim.hang_next("PATCH", "/deployments/web$", seconds=1.0, times=1)
    try:
        worker = start_worker(**WORKER, CELERY_BROKER_URL=line.url)
        operation = request(requester)
        wait_for(lambda: patches(sim), "the PATCH", log=lambda: worker.log)
        line.cut()
        target = wait_for(
            lambda: RedeployTarget.objects.filter(
                operation=operation, state=RedeployTarget.State.ROLLING
            ).first(),
            "the restart recorded",
            log=lambda: worker.log,
        )
        wait_for(
            lambda: "raised unexpected: OperationalError" in worker.log,
            "the follow-up's publishing failing",
            log=lambda: worker.log,
        )
        assert RedeployOperation.objects.get(pk=operation.pk).state == "RUNNING"
        kill(worker)
    finally:
        line.close()
    RedeployTarget.objects.filter(pk=target.pk).update(deadline_at=target.operated_at)
    reconciler = start_worker(**RECONCILER)

    reconcile_now()

    operation = finished(operation, reconciler)
    assert_succeeded_once(operation, sim, approved_ticket, redis_client)


def test_redis_away_for_the_worker(
    start_worker, requester, approved_ticket, binding, sim, redis_client
):
    """The worker needs Redis only to drop the held copy: the restart runs once and settles;
    the held copy expires with the grant's TTL."""
    worker = start_worker(**WORKER, REDIS_URL="redis://127.0.0.1:1/0")

    operation = finished(request(requester), worker)

    assert_succeeded_once(operation, sim, approved_ticket, redis_client)
    held = REDEPLOY_GRANTS.held_key(operation_id=operation.pk)
    assert 0 < redis_client.ttl(held) <= 7200  # left behind, but it expires


@pytest.mark.parametrize("lands", [True, False], ids=["delete-landed", "delete-never-landed"])
def test_a_pod_deletion_whose_worker_was_killed_and_message_lost(
    start_worker, broker, requester, delete_pod_ticket, binding, cluster, sim, redis_client, lands
):
    """Killed in the DELETE, its message lost: the reconciler looks the pod up. Gone means
    deleted (its replacement followed, the grant used); the same pod running means never."""
    remaining = redis_client.ttl(POD_KEY)
    victim = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")[0]
    sim.hang_next("DELETE", "/pods/", seconds=1.0 if lands else 120, times=1)
    first = start_worker(**WORKER)
    operation = pod_deletions.request_pod_deletion(
        user=requester,
        application_name="web",
        namespace="shop",
        deployment_name="web",
        pod_names=[victim.name],
        request_ip="10.0.0.7",
    )
    wait_for(lambda: deletes(sim), "the DELETE", log=lambda: first.log)
    kill(first)
    killed_at = time.monotonic()
    broker.flushdb()
    if lands:
        wait_for(lambda: sim.pod_deletions, "the hung DELETE landing")
    reconciler = start_worker(**RECONCILER)
    stuck_since(killed_at)

    reconcile_now()

    wait_for(
        lambda: PodDeletion.objects.get(pk=operation.pk).is_finished,
        "settling the pod deletion",
        log=lambda: reconciler.log,
    )
    operation = PodDeletion.objects.get(pk=operation.pk)
    (target,) = operation.targets.all()
    actions = audit_actions(operation=operation)
    assert len(deletes(sim)) == 1  # never deleted again
    assert actions.count("authorization.consumed") == 1
    delete_pod_ticket.refresh_from_db()
    if lands:
        assert (operation.state, target.deleted) == (PodDeletion.State.SUCCEEDED, True)
        assert len(sim.pod_deletions) == 1
        assert actions.count("pod_deletion.succeeded") == 1
        assert redis_client.exists(POD_KEY) == 0
        assert delete_pod_ticket.entries.get().state == TicketEntry.State.USED
        return
    assert (operation.state, target.deleted) == (PodDeletion.State.FAILED, False)
    assert "never reached it; nothing was applied" in target.message
    assert sim.pod_deletions == []
    assert actions[-2:] == ["pod_deletion.failed", "authorization.restored"]
    assert_grant_ttl(redis_client, POD_KEY, remaining, elapsed=180)
    assert delete_pod_ticket.entries.get().state == TicketEntry.State.AUTHORIZED
