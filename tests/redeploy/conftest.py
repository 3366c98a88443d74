"""Redeploy fixtures: a Kubernetes API simulator on 127.0.0.1, a cluster pointing at it, a live
authorization minted by the real ticket services, and (for end-to-end tests) a real Celery
worker process on the real Redis broker."""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Permission
from kombu import pools

from cratos.celery import app as celery_app
from tests.factories import (
    ApplicationFactory,
    BindingFactory,
    ClusterFactory,
    DeletePodWorkOrderFactory,
    TicketFactory,
)
from tests.kubesim import KubeSimulator

SIM_TOKEN = "sim-token-for-tests"
WORKER_START_SECONDS = 30


@pytest.fixture(autouse=True)
def fast_kubernetes(settings):
    """Short timeouts, retries and polls, so failure paths take a second, not a minute."""
    settings.KUBERNETES_REQUEST_TIMEOUT = 1.0
    settings.KUBERNETES_RETRY_ATTEMPTS = 3
    settings.KUBERNETES_RETRY_BACKOFF = 0.05
    settings.REDEPLOY_ROLLOUT_POLL_SECONDS = 0.1
    return settings


@pytest.fixture
def sim():
    with KubeSimulator(token=SIM_TOKEN, rollout_step_seconds=0.1) as simulator:
        yield simulator


@pytest.fixture
def cluster(db, sim):
    return ClusterFactory(name="sim", server=sim.url, token=SIM_TOKEN)


@pytest.fixture
def requester(alice):
    """alice, with the permission to redeploy."""
    alice.user_permissions.add(
        Permission.objects.get(content_type__app_label="redeploy", codename="redeploy_application")
    )
    return alice


@pytest.fixture
def approver(bob):
    return bob


@pytest.fixture
def as_alice(client, requester):
    client.force_login(requester)
    return client


@pytest.fixture
def application(db):
    return ApplicationFactory(name="web", tags=[{"key": "team", "value": "shop"}])


@pytest.fixture
def binding(application, cluster, sim):
    sim.add_deployment("shop", "web", replicas=2)
    return BindingFactory(
        application=application, cluster=cluster, namespace="shop", deployment_name="web"
    )


@pytest.fixture
def approved_ticket(requester, approver, application):
    """alice's ticket for `web`, approved by bob: her authorization is live in Redis."""
    return TicketFactory(applicant=requester, applications=[application], approved_by=approver)


@pytest.fixture
def delete_pod_ticket(requester, approver, application):
    """alice's APPLICATION_DELETE_POD ticket for `web`, approved by bob: her pod-delete
    authorization is live in Redis."""
    return TicketFactory(
        applicant=requester,
        work_order=DeletePodWorkOrderFactory(),
        applications=[application],
        approved_by=approver,
    )


def use_broker(url: str | None) -> None:
    """Point this process's Celery app at a broker (None: back to the settings)."""
    # The app reads Django settings under the CELERY_ namespace; override those keys.
    celery_app.conf.update(
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL if url is None else url,
        CELERY_TASK_ALWAYS_EAGER=settings.CELERY_TASK_ALWAYS_EAGER if url is None else False,
    )
    # Connection pools are built lazily from the broker URL; close and forget the old ones.
    pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker():
    """The real Redis broker of the end-to-end tests (its own database, emptied)."""
    client = redis.Redis.from_url(settings.TEST_E2E_BROKER_URL)
    client.flushdb()
    use_broker(settings.TEST_E2E_BROKER_URL)
    yield settings.TEST_E2E_BROKER_URL
    use_broker(None)
    client.flushdb()


def _test_database_url() -> str:
    """DATABASE_URL, naming the database pytest-django created for this session."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{settings.DATABASES['default']['NAME']}"))


class WorkerProcess:
    """A real `celery -A cratos worker` process (solo pool) on the test database and the broker at
    `broker_url`, its output collected line by line; `env` adds to its environment."""

    def __init__(self, *, broker_url: str, env: dict[str, str], name: str = "e2e"):
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cratos",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
            f"--hostname={name}-{uuid.uuid4().hex[:8]}@%h",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=Path(settings.BASE_DIR),
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "cratos.settings",
                "DATABASE_URL": _test_database_url(),
                "REDIS_URL": settings.REDIS_URL,
                "CELERY_BROKER_URL": broker_url,
                "PYTHONUNBUFFERED": "1",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def log(self) -> str:
        return "".join(self.output)

    def wait_ready(self) -> "WorkerProcess":
        deadline = time.monotonic() + WORKER_START_SECONDS
        while not any(" ready." in line for line in list(self.output)):
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                pytest.fail(f"The Celery worker exited ({self.process.returncode}):\n{self.log}")
            if time.monotonic() > deadline:
                pytest.fail(f"The worker was not ready in {WORKER_START_SECONDS} s:\n{self.log}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Killed, not shut down warmly: the test is over and nothing the worker would still do
        is looked at (its broker database is emptied), while a warm shutdown waits for the task
        at hand, such as a rollout's watch, about 1.5 s a test."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self._reader.join(timeout=5)


@pytest.fixture
def celery_worker(broker, transactional_db):
    """A real worker on the test database and the end-to-end broker: its output lines."""
    worker = WorkerProcess(
        broker_url=broker,
        env={"KUBERNETES_REQUEST_TIMEOUT": "2", "REDEPLOY_ROLLOUT_POLL_SECONDS": "0.3"},
    )
    try:
        yield worker.wait_ready().output
    finally:
        worker.stop()
