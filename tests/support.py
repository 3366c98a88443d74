"""Helpers shared by tests (fixtures live in conftest.py, factories in factories.py)."""

import uuid
from contextlib import contextmanager

from django.conf import settings
from django.test import override_settings
from django.utils.html import escape
from django_redis.pool import ConnectionFactory
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from redeploy import restarts, rollouts
from redeploy.providers import REDEPLOY_GRANTS
from tickets import grants

REDIS_DOWN_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@contextmanager
def redis_down():
    """django-redis pointed at a closed port, as when Redis is down."""
    caches = {"default": {**settings.CACHES["default"], "LOCATION": REDIS_DOWN_URL}}
    try:
        with override_settings(CACHES=caches, REDIS_URL=REDIS_DOWN_URL):
            yield
    finally:
        # django-redis keeps one process-wide pool per URL; drop this one so nothing leaks.
        ConnectionFactory._pools.pop(REDIS_DOWN_URL, None)


def client_for(user) -> APIClient:
    """An API client authenticated as `user`."""
    client = APIClient()
    client.force_authenticate(user)
    return client


def page(response) -> str:
    return response.content.decode()


def shows(response, text: str) -> bool:
    """The text appears on the page as the user reads it (HTML-escaped in the markup)."""
    return escape(text) in page(response)


def flash(response) -> list[str]:
    """The messages shown on the page."""
    return [str(message) for message in response.context["messages"]]


def audit_actions(**filters) -> list[str]:
    """The actions of the audit events matching `filters`, oldest first; a ticket or an
    operation given as an object matches by its id, as the log keeps it."""
    for name in ("ticket", "operation"):
        if name in filters:
            filters[f"{name}_id"] = filters.pop(name).pk
    return list(
        AuditEvent.objects.filter(**filters).order_by("pk").values_list("action", flat=True)
    )


def run_redeploy(operation_id, task_id: str = ""):
    """What the run_redeploys task does for one operation, in this thread; the operation."""
    (operation,) = restarts.run_redeploys(operation_ids=[operation_id], task_id=task_id)
    return operation


def check_rollout(target_id: int, task_id: str = "") -> float | None:
    """One look at one target's rollout (check_rollouts); seconds until the next, or None."""
    return rollouts.check_rollouts(target_ids=[target_id], task_id=task_id).get(target_id)


def consume(*, username: str, application_name: str):
    """Take one authorization and use it up, as an operation that applied its change does;
    the grant, or None."""
    operation_id = uuid.uuid4()
    (grant,) = grants.take_all(
        kind=REDEPLOY_GRANTS, username=username, wanted=[(application_name, operation_id)]
    )
    grants.release_all(kind=REDEPLOY_GRANTS, operation_ids=[operation_id])
    return grant


def assert_grant_ttl(redis_client, key: str, remaining: int, *, elapsed: int = 10) -> None:
    """The grant at `key` lives on for what was left of its lifetime, never longer and never
    for good: `0 < ttl <= remaining` (a key without expiry is -1, a missing one -2), and not
    much less either (`elapsed`: the seconds the test may have taken since)."""
    ttl = redis_client.ttl(key)
    assert 0 < ttl <= remaining, f"{key}: TTL {ttl}, expected 0 < TTL <= {remaining}"
    assert ttl >= remaining - elapsed, f"{key}: TTL {ttl}, far less than the {remaining} s left"
