"""Celery beat tasks: thin shells around the expiry sweeps in tickets.services.

A sweep that fails or overlaps another is harmless: each ticket or entry is settled in its own
transaction and skipped when someone else holds it, so the next run picks up what is left.
"""

from celery import shared_task

from . import services


@shared_task(name="tickets.expire_stale_tickets")
def expire_stale_tickets() -> int:
    return services.expire_stale_tickets()


@shared_task(name="tickets.expire_unused_authorizations")
def expire_unused_authorizations() -> int:
    return services.expire_unused_authorizations()
