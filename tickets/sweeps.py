"""The periodic sweeps (Celery beat): tickets left undecided too long, and authorizations that
ran out unused. Each ticket or entry settles in its own transaction and is skipped when someone
else holds it, so overlapping or failed sweeps are harmless: the next run picks up the rest."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cratos.audit.recorder import Action, Outcome, record_event

from .models import Ticket, TicketEntry
from .services import close_unapproved
from .settlements import settle_entry

State = Ticket.State
# An authorization counts as unused only this long after it ran out: an operation that took it
# just before has that long to commit, which marks its entry IN_USE.
AUTHORIZATION_EXPIRY_GRACE = timedelta(minutes=1)
EXPIRED_NOTE = "expired"


def expire_stale_tickets(*, now: datetime | None = None, max_age: timedelta | None = None) -> int:
    """Close tickets still IN_APPROVAL `max_age` after submission (TICKET_APPROVAL_MAX_AGE_DAYS)
    as expired: CLOSED with the note "expired", entries cancelled. Returns how many it closed.

    One transaction per ticket; a ticket locked by a vote or by another sweep is left for the
    next run (skip_locked), so concurrent sweeps never close one twice.
    """
    now = now or timezone.now()
    max_age = max_age or timedelta(days=settings.TICKET_APPROVAL_MAX_AGE_DAYS)
    stale = Ticket.objects.filter(state=State.IN_APPROVAL, submitted_at__lt=now - max_age)
    closed = 0
    for pk in stale.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            ticket = (
                stale.select_for_update(of=("self",), skip_locked=True)
                .select_related("work_order", "applicant")
                .filter(pk=pk)
                .first()
            )
            if ticket is None:
                continue
            close_unapproved(ticket=ticket, to_state=State.CLOSED, actor=None, note=EXPIRED_NOTE)
            record_event(
                action=Action.TICKET_EXPIRED,
                outcome=Outcome.INFO,
                ticket=ticket,
                message=f"Not decided within {max_age.total_seconds() / 86400:g} days of its "
                f"submission ({ticket.submitted_at.isoformat()}); closed as expired.",
            )
            closed += 1
    return closed


def expire_unused_authorizations(*, now: datetime | None = None) -> int:
    """Settle as EXPIRED every authorized entry whose authorization ran out unused; the last one
    settled completes its ticket (success False). Returns how many entries it expired.

    An entry in use is left to the operation that took its authorization, which settles it
    USED or gives it back; an operation that stays unsettled is settled by the reconciler
    (redeploy.reconcile), so no entry stays in use for good. One transaction per entry; a ticket
    locked by anyone else (a redeploy settling, a revocation, another sweep) is left for the next
    run.
    """
    now = now or timezone.now()
    unused = TicketEntry.objects.filter(
        state=TicketEntry.State.AUTHORIZED,
        authorization_expires_at__lt=now - AUTHORIZATION_EXPIRY_GRACE,
    )
    expired = 0
    for pk, ticket_id in unused.order_by("pk").values_list("pk", "ticket_id"):
        with transaction.atomic():
            # The ticket first, as every change of its entries locks it: the same order never
            # deadlocks, and settle_entry relies on it.
            ticket = (
                Ticket.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("work_order", "applicant")
                .filter(pk=ticket_id)
                .first()
            )
            # Read again under the ticket's lock: an operation may have taken it meanwhile.
            entry = unused.filter(pk=pk).first() if ticket is not None else None
            if entry is None:
                continue
            entry.ticket = ticket
            record_event(
                action=Action.AUTHORIZATION_EXPIRED,
                outcome=Outcome.INFO,
                ticket=ticket,
                application_name=entry.name,
                message=f"Authorization of {ticket.applicant.get_username()} for {entry.name} "
                f"expired unused at {entry.authorization_expires_at.isoformat()}",
            )
            settle_entry(entry=entry, state=TicketEntry.State.EXPIRED)
            expired += 1
    return expired
