"""Suite-wide fixtures. The suite runs against the real PostgreSQL and Redis (scripts/test)."""

import pytest
from django.conf import settings
from django.db import connection
from django.utils import translation

from tests.factories import RedeployWorkOrderFactory, UserFactory
from tests.support import redis_down

# django_db_setup: the migrated template copied for each worker.
pytest_plugins = ["tests.databases"]


@pytest.fixture(scope="session", autouse=True)
def _real_services(django_db_setup, django_db_blocker):
    # Never fall back to SQLite or the in-process token store: a missing service must fail.
    with django_db_blocker.unblock():
        vendor = connection.vendor
    assert vendor == "postgresql", (
        f"Tests need PostgreSQL (DATABASE_URL), got {vendor}. Run them with scripts/test."
    )
    assert settings.REDIS_URL, "Tests need the real Redis (REDIS_URL). Run them with scripts/test."
    from django_redis import get_redis_connection

    get_redis_connection("default").ping()


@pytest.fixture(autouse=True)
def redis_client():
    """The real Redis behind django-redis, emptied before each test."""
    from django_redis import get_redis_connection

    client = get_redis_connection("default")
    client.flushdb()
    return client


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # UserFactory hashes a password; PBKDF2 would cost most of each test's time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def unreachable_redis():
    with redis_down():
        yield


@pytest.fixture(autouse=True)
def _back_to_the_default_language():
    # LocaleMiddleware leaves the request's language active in this thread; later tests must
    # not run in Chinese (refusals are translated when rendered).
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _tasks_inline(settings):
    # Without a broker, tasks run inline in tests (the demo runs them in a thread).
    settings.TASKS_IN_THREADS = False


@pytest.fixture
def work_order(db):
    """The APPLICATION_REDEPLOY work order with its one "Approvers" node (rebuilt when a
    transactional test flushed the migration's)."""
    return RedeployWorkOrderFactory()


# The cast: alice asks, bob, carol and dave approve (the work order's "Approvers").


@pytest.fixture
def alice(work_order):
    return UserFactory(username="alice")


@pytest.fixture
def bob(work_order):
    return UserFactory(username="bob", groups=["Approvers"])


@pytest.fixture
def carol(work_order):
    return UserFactory(username="carol", groups=["Approvers"])


@pytest.fixture
def dave(work_order):
    return UserFactory(username="dave", groups=["Approvers"])


@pytest.fixture
def reviewer(client):
    """carol, logged in: a member of the Reviewers group (no direct permission)."""
    user = UserFactory(username="carol", groups=["Reviewers"])
    client.force_login(user)
    return user
