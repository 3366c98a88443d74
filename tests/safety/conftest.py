"""Safety fixtures: the redeploy suite's simulator, cluster, users, approved ticket and worker
processes (imported, not copied), with a Redis broker database of our own."""

import pytest
import redis
from django.conf import settings

from tests.redeploy.conftest import (  # noqa: F401  (fixtures, registered by being imported)
    WorkerProcess,
    application,
    approved_ticket,
    approver,
    binding,
    cluster,
    delete_pod_ticket,
    fast_kubernetes,
    requester,
    sim,
    use_broker,
)


@pytest.fixture
def broker():
    """The real Redis broker of the safety tests (its own database, emptied before and after)."""
    client = redis.Redis.from_url(settings.TEST_SAFETY_BROKER_URL)
    client.flushdb()
    use_broker(settings.TEST_SAFETY_BROKER_URL)
    yield client
    use_broker(None)
    client.flushdb()
    client.close()


@pytest.fixture
def start_worker(broker, transactional_db):
    """`start_worker(**env)`: a real worker on the test database and the safety broker, ready.
    A test may start several (one after another dies); all are stopped at its end."""
    workers: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(broker_url=settings.TEST_SAFETY_BROKER_URL, env=env, name="safety")
        workers.append(worker)
        return worker.wait_ready()

    yield start
    for worker in workers:
        worker.stop()
