"""Celery beat tasks: thin shells around the sweeps in tickets.sweeps."""

from celery import shared_task

from . import sweeps


@shared_task(name="tickets.expire_stale_tickets")
def expire_stale_tickets() -> int:
    return sweeps.expire_stale_tickets()


@shared_task(name="tickets.expire_unused_authorizations")
def expire_unused_authorizations() -> int:
    return sweeps.expire_unused_authorizations()
