"""Settling a ticket's entry once its authorization was used, expired or revoked; the last one
settled completes the ticket."""

from django.utils import timezone

from cratos.audit.recorder import Action, Outcome, record_event
from cratos.exceptions import InvalidTransition, ValidationFailed

from .models import Ticket, TicketEntry
from .ticket_states import transition


def settle_entry(
    *, entry: TicketEntry, state: str, actor=None, success: bool | None = None
) -> TicketEntry:
    """Mark an authorized entry EXPIRED or REVOKED, or one in use USED (with `success`); the last
    one settled makes the ticket COMPLETED, successful only when every entry was USED with
    success.

    Called by the grant-use, revocation and expiry services, in their transaction, which hold
    the lock of the entry's ticket (`entry.ticket`, read under it; every entry's change takes
    it first) and audit the entry themselves. Nothing is locked again here: a redeploy's
    verdict is committed that much sooner.
    """
    if state not in TicketEntry.SETTLED_STATES:
        raise ValidationFailed(
            f"An entry settles as {', '.join(TicketEntry.SETTLED_STATES)}, not as {state}."
        )
    ticket = entry.ticket
    settles_from = (
        TicketEntry.State.IN_USE
        if state == TicketEntry.State.USED
        else TicketEntry.State.AUTHORIZED
    )
    if entry.state != settles_from:
        raise InvalidTransition(
            f"{entry.name} on ticket {ticket.ticket_no} is {entry.state}; "
            f"only an entry {settles_from.label.lower()} can be settled {state}."
        )
    entry.state = state
    entry.success = success if state == TicketEntry.State.USED else None
    entry.save(update_fields=["state", "success"])
    # Asked of the database: a batch's ticket has hundreds of entries, settled one by one.
    entries = ticket.entries.all()
    if not entries.exclude(state__in=TicketEntry.SETTLED_STATES).exists():
        transition(ticket=ticket, to_state=Ticket.State.COMPLETED, actor=actor)
        ticket.success = not entries.exclude(state=TicketEntry.State.USED, success=True).exists()
        ticket.completed_at = timezone.now()
        ticket.save()
        record_event(
            action=Action.TICKET_COMPLETED,
            actor=actor,
            outcome=Outcome.SUCCESS if ticket.success else Outcome.FAILURE,
            ticket=ticket,
            # Worded for every kind of work order: a ticket may authorize pod deletions.
            message="Every authorized action ran and succeeded."
            if ticket.success
            else "Not every authorized action ran or succeeded.",
        )
    return entry
