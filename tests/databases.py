"""The test databases: migrated once per run, then copied for each pytest-xdist worker.

Running the migrations costs each worker several seconds of CPU, and the workers would run them
side by side on the same two cores. So the first worker to arrive migrates a template database,
and every worker's own database is PostgreSQL's copy of it (CREATE DATABASE ... TEMPLATE), which
takes well under a second. The template is named by a digest of the code and the lock file,
so a later run of the same code (CI after a session, a developer's next run) copies it at once,
and any change migrates a new one; the template of other code is dropped.
"""

import fcntl
import hashlib
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

LOCK = Path(tempfile.gettempdir()) / "cratos-tests-template.lock"
ROOT = Path(__file__).resolve().parent.parent
# What the migrated database can depend on: the apps' code (migrations import some of it, and
# post_migrate reads the models) and the installed versions.
SOURCES = ["cratos", "tickets", "redeploy"]


def code_digest() -> str:
    digest = hashlib.sha256((ROOT / "requirements.lock").read_bytes())
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@contextmanager
def _one_worker_at_a_time():
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _databases_named(cursor, pattern: str) -> list[str]:
    cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern])
    return [name for (name,) in cursor.fetchall()]


def _migrate_template(connection, template: str) -> None:
    """Create `template` and migrate it, leaving the connection's settings as they were. Built
    under another name and renamed once migrated, so a failed migration leaves no template."""
    settings_dict = connection.settings_dict
    name, test_name = settings_dict["NAME"], settings_dict["TEST"].get("NAME")
    building = f"{template}_building"
    settings_dict["TEST"]["NAME"] = building
    try:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    finally:
        connection.close()
        settings_dict["NAME"], settings_dict["TEST"]["NAME"] = name, test_name
    with connection.creation._nodb_cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')


@pytest.fixture(scope="session")
def django_db_setup(
    request, django_test_environment, django_db_blocker, django_db_modify_db_settings
):
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    template = f"{settings.DATABASES['default']['NAME']}_migrated_{code_digest()}"
    worker_database = connection.creation._get_test_db_name()
    with django_db_blocker.unblock():
        with _one_worker_at_a_time():
            with connection.creation._nodb_cursor() as cursor:
                earlier = _databases_named(cursor, template.rsplit("_", 1)[0] + "_%")
                for stale in set(earlier) - {template}:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{stale}"')
            if template not in earlier:
                _migrate_template(connection, template)
            with connection.creation._nodb_cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{worker_database}"')
                cursor.execute(f'CREATE DATABASE "{worker_database}" TEMPLATE "{template}"')
        # keepdb: the copy is there and migrated; Django checks it and runs post_migrate.
        databases = setup_databases(
            verbosity=request.config.option.verbose,
            interactive=False,
            keepdb=True,
            aliases={"default"},
            serialized_aliases=set(),
        )
    yield
    with django_db_blocker.unblock():
        teardown_databases(databases, verbosity=request.config.option.verbose)
