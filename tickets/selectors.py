"""Reads that feed pages, admin and API."""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from cratos.audit.models import AuditEvent
from cratos.audit.selectors import may_review_audit
from cratos.exceptions import NotFound

from . import grants
from .models import Approval, ApprovalNode, Ticket, TicketEntry, TicketStateChange, WorkOrder
from .providers import markdown_table, provider_for
from .rules import (
    candidate_of,
    decidable_by,
    decision_refusal,
    revoke_refusal,
    revoker_refusal,
    view_refusal,
)


def _ticket_missing(ticket_no: str):
    """Worded when shown, in the reader's language."""
    return format_lazy(_("Ticket {ticket_no} does not exist."), ticket_no=ticket_no)


def _tickets() -> QuerySet[Ticket]:
    return Ticket.objects.select_related("work_order", "applicant", "current_node__group")


def ticket_queryset() -> QuerySet[Ticket]:
    # chosen_approvers and approvals are what tickets.rules.decision_refusal reads.
    return _tickets().prefetch_related(
        "chosen_approvers",
        Prefetch("approvals", queryset=Approval.objects.select_related("node", "approver", "team")),
    )


def entries_in_order() -> Prefetch:
    """A page's tickets' entries, each ticket's in the order they were added. TicketEntry's
    own ordering ("ticket", "id") joins every ticket to sort by the ticket's ordering, which
    the planner did over all tickets (3 ms of the ticket list with 10,000)."""
    return Prefetch("entries", queryset=TicketEntry.objects.order_by("id"))


def tickets_of(*, applicant) -> QuerySet[Ticket]:
    return ticket_queryset().filter(applicant=applicant)


def ticket_list_of(*, applicant) -> QuerySet[Ticket]:
    """The applicant's tickets as their list shows them (work order, entries): no rule is asked
    of a row, so none of the rules' reads is loaded (two queries, 20 querysets and 60 model
    instances a page, for nothing)."""
    return (
        Ticket.objects.select_related("work_order")
        .filter(applicant=applicant)
        .prefetch_related(entries_in_order())
    )


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
        raise NotFound(_ticket_missing(ticket_no)) from None
    refusal = view_refusal(ticket=ticket, user=user)
    if refusal:
        raise refusal
    return ticket


def ticket_for_vote(*, ticket_no: str, user) -> Ticket:
    """visible_ticket for a vote: a candidate approver of a submitted ticket keeps seeing it once
    their node was decided, to hear why the vote no longer counts (as on the approval queue)."""
    try:
        ticket = ticket_by_no(ticket_no=ticket_no)
    except Ticket.DoesNotExist:
        raise NotFound(_ticket_missing(ticket_no)) from None
    candidate = ticket.state != Ticket.State.NEW and any(
        candidate_of(ticket=ticket, node=node, user=user)
        for node in ticket.work_order.nodes.all()
        if node.is_gating
    )
    if not candidate:
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
    already decided on, at an APPLICATION_OWNER node only those awaiting a team of theirs;
    oldest submission first.

    Only the tickets at APPLICATION_OWNER nodes are loaded with what the rule reads; the rest
    is a plain query (the queue's 50 cards read no rule: prefetching the rules' reads for them
    cost two queries and a queryset per ticket and prefetch)."""
    decidable = decidable_by(user)
    at_owner_nodes = (
        ticket_queryset()
        .filter(decidable, current_node__node_type=ApprovalNode.Type.APPLICATION_OWNER)
        .prefetch_related("entries")
    )
    not_theirs = [
        ticket.pk for ticket in at_owner_nodes if decision_refusal(ticket=ticket, user=user)
    ]
    return _tickets().filter(decidable).exclude(pk__in=not_theirs).order_by("submitted_at", "id")


def count_awaiting_decision(*, user, at_most: int) -> int:
    """How many tickets await `user`'s decision, counted up to `at_most`: the menu's badge on
    every page needs no more, and counting 10,000 waiting tickets costs ~20 ms a page."""
    return tickets_awaiting_decision(user=user).order_by().values("pk")[:at_most].count()


def tickets_in_admin(*, user) -> QuerySet[Ticket]:
    """The admin's tickets: every one for superusers and reviewers; for an approver, those
    awaiting their decision now and those they decided."""
    tickets = ticket_queryset()
    if user.is_superuser or may_review_audit(user=user):
        return tickets
    awaiting = tickets_awaiting_decision(user=user).order_by().values("pk")
    decided = Approval.objects.filter(ticket_id=OuterRef("pk"), approver_id=user.pk)
    return tickets.filter(Q(pk__in=awaiting) | Exists(decided))


def identical_open_tickets(*, ticket: Ticket) -> list[str]:
    """The numbers of the applicant's other unfinished tickets (draft or in approval) of the same
    work order for exactly the same applications: a likely duplicate, worth a warning."""
    names = sorted(entry.name for entry in ticket.entries.all())
    others = (
        tickets_of(applicant=ticket.applicant)
        .filter(
            work_order_id=ticket.work_order_id,
            state__in=(Ticket.State.NEW, Ticket.State.IN_APPROVAL),
        )
        .exclude(pk=ticket.pk)
        .prefetch_related("entries")
    )
    return [
        other.ticket_no
        for other in others
        if sorted(entry.name for entry in other.entries.all()) == names
    ]


class LiveAuthorization(NamedTuple):
    entry: TicketEntry
    grant: grants.Grant

    @property
    def seconds_left(self) -> int:
        return self.grant.seconds_left()


def live_authorizations(*, user, work_order_key: str | None = None) -> list[LiveAuthorization]:
    """The user's live authorizations (of one kind of work order, or of all) with their
    entries, soonest to expire first: one query, and one Redis round trip per kind.

    An entry whose authorization was replaced by a newer ticket's, taken or expired in Redis is
    left out: only what Redis still holds counts.
    """
    entries = TicketEntry.objects.select_related("ticket__work_order").filter(
        ticket__applicant=user, state=TicketEntry.State.AUTHORIZED
    )
    if work_order_key is not None:
        entries = entries.filter(ticket__work_order__key=work_order_key)
    by_kind = defaultdict(list)
    for entry in entries.order_by("authorization_expires_at", "id"):
        by_kind[provider_for(entry.ticket.work_order).grant_kind].append(entry)
    live = []
    for kind, kind_entries in by_kind.items():
        found = grants.live_grants(
            kind=kind,
            username=user.get_username(),
            application_names=[entry.name for entry in kind_entries],
        )
        by_ticket_and_name = {(grant.ticket_id, grant.application_name): grant for grant in found}
        live += [
            LiveAuthorization(entry, by_ticket_and_name[(entry.ticket_id, entry.name)])
            for entry in kind_entries
            if (entry.ticket_id, entry.name) in by_ticket_and_name
        ]
    return sorted(live, key=lambda item: (item.entry.authorization_expires_at, item.entry.pk))


class MissingAuthorization(NamedTuple):
    """Why a user holds no live authorization for an application, for a refusal that names its
    reason: their latest entry for it (None: no ticket ever asked for it) and, once one was
    taken, when and by which operation."""

    application_name: str
    work_order_key: str
    entry: TicketEntry | None
    taken_at: datetime | None = None
    operation_id: UUID | None = None

    @property
    def reason(self) -> str:
        """never, draft, pending, gone, in_use, used, expired, revoked or cancelled."""
        entry = self.entry
        if entry is None:
            return "never"
        if entry.state == TicketEntry.State.DRAFT:
            return "pending" if entry.ticket.state == Ticket.State.IN_APPROVAL else "draft"
        if entry.state == TicketEntry.State.AUTHORIZED:
            # Still AUTHORIZED here but not live in Redis: its TTL ran out before the sweep
            # settled it, or the store lost it.
            expired = entry.authorization_expires_at <= timezone.now()
            return "expired" if expired else "gone"
        return entry.state.lower()


def missing_authorization(
    *, user, application_name: str, work_order_key: str
) -> MissingAuthorization:
    """What became of the user's latest authorization for the application (see
    MissingAuthorization); read when a request was refused for want of one."""
    entry = (
        TicketEntry.objects.select_related("ticket")
        .filter(
            ticket__applicant=user,
            ticket__work_order__key=work_order_key,
            name=application_name,
        )
        .order_by("-ticket__created_at", "-id")
        .first()
    )
    taken = None
    if entry is not None:
        taken = (
            AuditEvent.objects.filter(
                action=AuditEvent.Action.AUTHORIZATION_CONSUMED,
                ticket_id=entry.ticket_id,
                application_name=entry.name,
            )
            .order_by("-created_at", "-id")
            .first()
        )
    return MissingAuthorization(
        application_name=application_name,
        work_order_key=work_order_key,
        entry=entry,
        taken_at=taken.created_at if taken else None,
        operation_id=taken.operation_id if taken else None,
    )


# -- the approver's queue and its confirmation -------------------------------------------------


class EntryForDecision(NamedTuple):
    entry: TicketEntry
    row: list[str]  # the entry's row of the seed's table


class TicketForDecision(NamedTuple):
    ticket: Ticket
    node: ApprovalNode  # the node the vote is for: the one the approver saw
    entry_headers: list[str]
    entries: list[EntryForDecision]
    targets_html: str  # where an approval would let the applicant act, as its kind shows it

    @property
    def vote(self) -> str:
        """The ticket and the node the approver saw, as the approval pages post them."""
        return f"{self.ticket.ticket_no}:{self.node.pk}"


def targets_html(*, entries_of: Iterable[tuple[Ticket, list[TicketEntry]]]) -> dict[int, str]:
    """{ticket id: where approving those entries would let the applicant act}, each kind of
    work order rendering its own: one batch per kind."""
    by_provider = defaultdict(dict)
    for ticket, entries in entries_of:
        by_provider[provider_for(ticket.work_order)][ticket.pk] = entries
    rendered = {}
    for provider, entries_of in by_provider.items():
        rendered.update(provider.targets_html(entries_of=entries_of))
    return rendered


def _for_decision(votes: list[tuple[Ticket, ApprovalNode]]) -> list[TicketForDecision]:
    """Each ticket (entries prefetched) with its table and where its approval would act."""
    targets = targets_html(entries_of=[(ticket, list(ticket.entries.all())) for ticket, _ in votes])
    decisions = []
    for ticket, node in votes:
        headers, rows = entries_table(ticket=ticket)
        entries = [
            EntryForDecision(entry, row)
            for entry, row in zip(ticket.entries.all(), rows, strict=True)
        ]
        decisions.append(TicketForDecision(ticket, node, headers, entries, targets[ticket.pk]))
    return decisions


# The queue page shows the oldest tickets only: an approver decides from the top, and a page of
# ten thousand cards (each with its forms) would take seconds to render and to read.
APPROVAL_QUEUE_LENGTH = 50


class ApprovalQueue(NamedTuple):
    items: list[TicketForDecision]  # the oldest waiting, at most APPROVAL_QUEUE_LENGTH
    waiting: int  # how many tickets await the user in all


def approval_queue(*, user, limit: int = APPROVAL_QUEUE_LENGTH) -> ApprovalQueue:
    """The oldest `limit` tickets awaiting `user`'s vote (tickets_awaiting_decision), ready for
    the queue page, and how many wait in all: a constant number of queries however many wait."""
    awaiting = tickets_awaiting_decision(user=user)
    tickets = list(awaiting.prefetch_related(entries_in_order())[:limit])
    waiting = len(tickets) if len(tickets) < limit else awaiting.count()
    return ApprovalQueue(
        _for_decision([(ticket, ticket.current_node) for ticket in tickets]), waiting
    )


def tickets_for_decision(
    *, user, votes: Mapping[str, int]
) -> tuple[list[TicketForDecision], list[NotFound]]:
    """The tickets `user` votes on ({ticket number: id of the node they saw}), in that order, and
    a refusal for each one they may not see.

    The services decide whether each vote still counts; an approver whose node was decided
    meanwhile keeps seeing the ticket (tickets.rules.candidate_of) to hear why not.
    """
    tickets = {
        ticket.ticket_no: ticket
        for ticket in ticket_queryset().prefetch_related("entries").filter(ticket_no__in=votes)
    }
    nodes = ApprovalNode.objects.select_related("group").in_bulk(set(votes.values()))
    found, refused = [], []
    for ticket_no, node_id in votes.items():
        ticket, node = tickets.get(ticket_no), nodes.get(node_id)
        if (
            ticket is None
            or node is None
            or (
                view_refusal(ticket=ticket, user=user) is not None
                and not candidate_of(ticket=ticket, node=node, user=user)
            )
        ):
            refused.append(NotFound(_ticket_missing(ticket_no)))
        else:
            found.append((ticket, node))
    return _for_decision(found), refused


# -- revocation --------------------------------------------------------------------------------


def entry_for_revocation(*, ticket_no: str, entry_id: int, user) -> TicketEntry:
    """The entry with its ticket, if `user` may see the ticket or revoke its authorizations."""
    ticket = (
        Ticket.objects.select_related("work_order", "applicant").filter(ticket_no=ticket_no).first()
    )
    if ticket is None or (
        revoker_refusal(ticket=ticket, user=user) is not None
        and view_refusal(ticket=ticket, user=user) is not None
    ):
        raise NotFound(_ticket_missing(ticket_no))
    entry = ticket.entries.filter(pk=entry_id).first()
    if entry is None:
        raise NotFound(
            format_lazy(
                _("Ticket {ticket_no} has no entry {entry_id}."),
                ticket_no=ticket_no,
                entry_id=entry_id,
            )
        )
    entry.ticket = ticket
    return entry


def revocable_entry_ids(*, ticket: Ticket, user) -> set[int]:
    """The ticket's entries whose authorization `user` may revoke now (for the ticket page)."""
    return {
        entry.pk
        for entry in ticket.entries.all()
        if entry.state == TicketEntry.State.AUTHORIZED
        and revoke_refusal(entry=entry, user=user) is None
    }
