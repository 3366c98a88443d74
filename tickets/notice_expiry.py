"""The "authorization expiring soon" sweep (Celery beat): NOTICE_EXPIRY_WARNING_MINUTES before
an authorization runs out unused, its requester hears of it, once per authorization."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from cratos.audit.recorder import Action, Outcome, record_event

from .models import ExpiryWarning, TicketEntry
from .notifications import notify_authorization_expiring


def warn_expiring_authorizations(*, now: datetime | None = None) -> int:
    """Warn the requester of each live authorization that expires within the warning window
    and was not warned of yet; returns how many it warned of. A warning row per authorization
    (entry and expiry) makes overlapping sweeps warn once; an authorization given back keeps
    its expiry, so it is not warned of twice either."""
    now = now or timezone.now()
    horizon = now + timedelta(minutes=settings.NOTICE_EXPIRY_WARNING_MINUTES)
    warned_before = ExpiryWarning.objects.filter(
        entry=OuterRef("pk"), expires_at=OuterRef("authorization_expires_at")
    )
    due = TicketEntry.objects.filter(
        state=TicketEntry.State.AUTHORIZED,
        authorization_expires_at__gt=now,
        authorization_expires_at__lte=horizon,
    ).filter(~Exists(warned_before))
    warned = 0
    for entry in due.select_related("ticket__applicant").order_by("pk"):
        with transaction.atomic():
            _warning, created = ExpiryWarning.objects.get_or_create(
                entry=entry, expires_at=entry.authorization_expires_at
            )
            if not created:
                continue
            record_event(
                action=Action.AUTHORIZATION_EXPIRY_WARNED,
                outcome=Outcome.INFO,
                ticket=entry.ticket,
                application_name=entry.name,
                message=f"{entry.ticket.applicant.get_username()} warned: the authorization for "
                f"{entry.name} expires at {entry.authorization_expires_at.isoformat()}",
            )
            notify_authorization_expiring(entry=entry)
            warned += 1
    return warned
