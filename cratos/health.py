"""Liveness and readiness probes for the web process, and the counts apps report on them."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)

# Counts an app above cratos reports on /readyz (redeploy: its unsettled operations), by name.
_counts: dict[str, Callable[[], dict[str, int]]] = {}


def register_counts(name: str, count: Callable[[], dict[str, int]]) -> None:
    _counts[name] = count


def _reported_counts() -> dict:
    reported = {}
    for name, count in _counts.items():
        try:
            reported[name] = count()
        # A count that fails (the database away) is told, and readiness says why anyway.
        except Exception as exc:
            logger.warning("Counting %s for /readyz failed: %s", name, exc)
            reported[name] = f"error: {type(exc).__name__}"
    return reported


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        get_redis_connection("default").ping()


def _check_broker() -> None:
    if settings.CELERY_BROKER_URL:
        from cratos.celery import app

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)


@never_cache
def readyz(request):
    checks = {"database": _check_database, "redis": _check_redis, "broker": _check_broker}
    results = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        # Any failure means not ready; the body says which dependency failed.
        except Exception as exc:
            results[name] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in results.values())
    # The counts inform (a dashboard, an alert on stuck operations); they do not gate readiness.
    body = {"ready": ready, "checks": results, "counts": _reported_counts()}
    return JsonResponse(body, status=200 if ready else 503)
