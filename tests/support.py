"""Helpers shared by tests (fixtures live in conftest.py, factories in factories.py)."""

from contextlib import contextmanager

from django.conf import settings
from django.test import override_settings
from django_redis.pool import ConnectionFactory

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
