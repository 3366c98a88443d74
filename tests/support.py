"""Helpers shared by tests (fixtures live in conftest.py, factories in factories.py)."""

from contextlib import contextmanager

from django.conf import settings
from django.test import override_settings
from django.utils.html import escape
from django_redis.pool import ConnectionFactory
from rest_framework.test import APIClient

from redeploy.models import AuditEvent

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
    """The actions of the audit events matching `filters`, oldest first."""
    return list(
        AuditEvent.objects.filter(**filters).order_by("pk").values_list("action", flat=True)
    )
