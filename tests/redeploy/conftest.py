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
from redeploy.kubesim import KubeSimulator
from tests.factories import (
    ApplicationFactory,
    BindingFactory,
    ClusterFactory,
    TicketFactory,
    UserFactory,
)

SIM_TOKEN = "sim-token-for-tests"
E2E_BROKER_URL = "redis://127.0.0.1:6379/7"
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
def requester(db):
    user = UserFactory(username="alice")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="redeploy", codename="redeploy_application")
    )
    return user


@pytest.fixture
def approver(db):
    return UserFactory(username="bob", groups=["Approvers"])


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
    client = redis.Redis.from_url(E2E_BROKER_URL)
    client.flushdb()
    use_broker(E2E_BROKER_URL)
    yield E2E_BROKER_URL
    use_broker(None)
    client.flushdb()


def _test_database_url() -> str:
    """DATABASE_URL, naming the database pytest-django created for this session."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{settings.DATABASES['default']['NAME']}"))


@pytest.fixture
def celery_worker(broker, transactional_db):
    """A real `celery -A cratos worker` process on the test database and the real broker."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cratos.settings",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": broker,
        "KUBERNETES_REQUEST_TIMEOUT": "2",
        "REDEPLOY_ROLLOUT_POLL_SECONDS": "0.3",
        "PYTHONUNBUFFERED": "1",
    }
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
        f"--hostname=e2e-{uuid.uuid4().hex[:8]}@%h",
    ]
    process = subprocess.Popen(
        command,
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []

    def read():
        for line in process.stdout:
            output.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + WORKER_START_SECONDS
    try:
        while not any(" ready." in line for line in list(output)):
            if process.poll() is not None:
                reader.join(timeout=5)
                pytest.fail(f"The Celery worker exited ({process.returncode}):\n{''.join(output)}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"The Celery worker was not ready within {WORKER_START_SECONDS} s:\n"
                    + "".join(output)
                )
            time.sleep(0.1)
        yield output
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        reader.join(timeout=5)
