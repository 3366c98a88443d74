"""Reads that feed pages, admin and API."""

from typing import NamedTuple

from django.db.models import Prefetch, QuerySet

from cratos.exceptions import NotFound
from redeploy import authorization

from .models import Approval, Ticket, TicketEntry, TicketStateChange, WorkOrder
from .providers import markdown_table, provider_for
from .rules import decidable_by, view_refusal


def ticket_queryset() -> QuerySet[Ticket]:
    # chosen_approvers and approvals are what tickets.rules.decision_refusal reads.
    return Ticket.objects.select_related(
        "work_order", "applicant", "current_node__group"
    ).prefetch_related(
        "chosen_approvers",
        Prefetch("approvals", queryset=Approval.objects.select_related("node", "approver")),
    )


def tickets_of(*, applicant) -> QuerySet[Ticket]:
    return ticket_queryset().filter(applicant=applicant)


def ticket_by_no(*, ticket_no: str) -> Ticket:
    """The ticket with its entries, decisions and history loaded (raises Ticket.DoesNotExist)."""
    return (
        ticket_queryset()
        .prefetch_related(
            "entries",
            Prefetch("state_changes", queryset=TicketStateChange.objects.select_related("actor")),
        )
        .get(ticket_no=ticket_no)
    )


def visible_ticket(*, ticket_no: str, user) -> Ticket:
    """The ticket as `ticket_by_no` loads it, if `user` may see it; NotFound alike otherwise."""
    try:
        ticket = ticket_by_no(ticket_no=ticket_no)
    except Ticket.DoesNotExist:
        raise NotFound(f"Ticket {ticket_no} does not exist.") from None
    refusal = view_refusal(ticket=ticket, user=user)
    if refusal:
        raise refusal
    return ticket


def work_order_by_key(*, key: str) -> WorkOrder:
    return WorkOrder.objects.prefetch_related("nodes__group").get(key=key)


def entries_table(*, ticket: Ticket) -> tuple[list[str], list[list[str]]]:
    """The seed's table (`Application Name | Tags`): headers and one row per entry snapshot."""
    provider = provider_for(ticket.work_order)
    rows = [provider.table_row(content=entry.content) for entry in ticket.entries.all()]
    return provider.table_headers, rows


def entries_markdown(*, ticket: Ticket) -> str:
    """The same table as Markdown text, for notices."""
    headers, rows = entries_table(ticket=ticket)
    return markdown_table(headers, rows)


def tickets_awaiting_decision(*, user) -> QuerySet[Ticket]:
    """Tickets whose current node `user` may decide now: never their own, never ones they
    already decided on, oldest submission first."""
    return ticket_queryset().filter(decidable_by(user)).order_by("submitted_at", "id")


class LiveAuthorization(NamedTuple):
    entry: TicketEntry
    token: authorization.RedeployToken

    @property
    def seconds_left(self) -> int:
        return self.token.seconds_left()


def live_authorizations(*, user) -> list[LiveAuthorization]:
    """The user's live redeploy authorizations with their entries, soonest to expire first.

    An entry whose authorization was replaced by a newer ticket's, consumed or expired in Redis
    is left out: only what Redis still holds counts.
    """
    entries = list(
        TicketEntry.objects.select_related("ticket")
        .filter(ticket__applicant=user, state=TicketEntry.State.AUTHORIZED)
        .order_by("authorization_expires_at", "id")
    )
    tokens = authorization.live_tokens(
        username=user.get_username(), application_names=[entry.name for entry in entries]
    )
    by_ticket_and_name = {(token.ticket_id, token.application_name): token for token in tokens}
    return [
        LiveAuthorization(entry, by_ticket_and_name[(entry.ticket_id, entry.name)])
        for entry in entries
        if (entry.ticket_id, entry.name) in by_ticket_and_name
    ]
