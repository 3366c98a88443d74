"""Liveness and readiness probes for the web process."""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache


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
    return JsonResponse({"ready": ready, "checks": results}, status=200 if ready else 503)
