"""A ticket's row lock and its state changes, kept in its history: what every ticket write
starts and ends with (tickets.services, settlements, revocations)."""

from cratos.exceptions import DomainError

from .models import Ticket
from .rules import transition_refusal


def refuse(refusal: DomainError | None) -> None:
    if refusal is not None:
        raise refusal


def locked_ticket(ticket: Ticket) -> Ticket:
    # of=("self",): lock the ticket row only, not the joined work order and applicant rows.
    return (
        Ticket.objects.select_for_update(of=("self",))
        .select_related("work_order", "applicant")
        .get(pk=ticket.pk)
    )


def transition(*, ticket: Ticket, to_state: str, actor, note: str = "") -> None:
    """Move the ticket to `to_state` and keep the step in its state history (caller saves)."""
    refuse(transition_refusal(ticket=ticket, to_state=to_state))
    ticket.state_changes.create(from_state=ticket.state, to_state=to_state, actor=actor, note=note)
    ticket.state = to_state
