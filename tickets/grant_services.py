"""The use of a grant by an operation: take it, then settle it used or give it back.

An operation of any granted action (a redeploy, a pod deletion) takes its grants in the
transaction that creates it: the grants move under the operation's key in Redis and their
entries become IN_USE, so nothing else (a revocation, the expiry sweep) settles them
meanwhile. The operation ends by `use_grant` (its change was applied: the entry is USED) or
`give_back_grant` (nothing was applied: the grant returns for the rest of its lifetime).
"""

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import transaction

from cratos.audit.recorder import Action, Outcome, build_event, record_events
from cratos.exceptions import ServiceUnavailable

from . import grants
from .grants import Grant, GrantKind, UnauthorizedAccess
from .models import Ticket, TicketEntry
from .settlements import settle_entry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wanted:
    """One grant an operation asks for: the application it acts on, and the operation."""

    application_name: str
    operation_id: object


def _locked_entries(taken: list[tuple[Wanted, Grant]]) -> dict[tuple[int, str], TicketEntry]:
    # Tickets first, in id order, as every change of their entries locks them: never a deadlock.
    ticket_ids = sorted({grant.ticket_id for _, grant in taken})
    tickets = Ticket.objects.select_for_update(of=("self",)).in_bulk(ticket_ids)
    entries = TicketEntry.objects.select_for_update(of=("self",)).filter(
        ticket_id__in=ticket_ids, name__in={wanted.application_name for wanted, _ in taken}
    )
    found = {}
    for entry in entries:
        entry.ticket = tickets[entry.ticket_id]
        found[(entry.ticket_id, entry.name)] = entry
    return found


@contextmanager
def taken_grants(
    *, kind: GrantKind, user, wanted: Sequence[Wanted], **where
) -> Iterator[list[Grant]]:
    """Take the user's live grant for each wanted application, all or none, inside the
    transaction that creates the operations: of many racing requests exactly one takes each
    grant. Marks their entries IN_USE, audits each consumption, and yields the grants (in the
    order wanted) for the caller's last writes. `where`: more fields of the audit events.

    Raises UnauthorizedAccess (naming the applications in a batch) when any is missing. Any
    error before the block ends puts every grant taken here back: the operations never
    commit, so nothing else could have seen them. Should the commit itself fail, the grants
    stay held for operations that do not exist, and expire with their TTL.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("grants are taken inside the transaction of their operations")
    username = user.get_username()
    taken = grants.take_all(
        kind=kind,
        username=username,
        wanted=[(item.application_name, item.operation_id) for item in wanted],
    )
    held = [
        (username, item.application_name, item.operation_id)
        for item, grant in zip(wanted, taken, strict=True)
        if grant is not None
    ]
    try:
        pairs = [(w, g) for w, g in zip(wanted, taken, strict=True) if g is not None]
        entries = _locked_entries(pairs) if pairs else {}
        missing = [
            w.application_name
            for w, g in zip(wanted, taken, strict=True)
            if g is None
            or entries.get((g.ticket_id, w.application_name)) is None
            or entries[(g.ticket_id, w.application_name)].state != TicketEntry.State.AUTHORIZED
        ]
        if missing:
            if len(wanted) == 1:
                raise UnauthorizedAccess(missing=tuple(missing))
            raise UnauthorizedAccess(
                f"{grants.UNAUTHORIZED_ACCESS} (no live authorization: {', '.join(missing)})",
                missing=tuple(missing),
            )
        events = []
        for item, grant in pairs:
            entry = entries[(grant.ticket_id, item.application_name)]
            entry.state = TicketEntry.State.IN_USE
            events.append(
                build_event(
                    action=Action.AUTHORIZATION_CONSUMED,
                    actor=user,
                    ticket=entry.ticket,
                    operation_id=item.operation_id,
                    application_name=item.application_name,
                    message=f"Authorization of ticket {grant.ticket_no} consumed "
                    f"({grant.seconds_left()} s were left)",
                    **where,
                )
            )
        # One UPDATE (Django's bulk_update costs per row: a batch takes hundreds).
        TicketEntry.objects.filter(
            pk__in=[entries[(grant.ticket_id, item.application_name)].pk for item, grant in pairs]
        ).update(state=TicketEntry.State.IN_USE)
        record_events(*events)
        yield [grant for grant in taken if grant is not None]
    except BaseException:
        grants.put_back_all(kind=kind, held=held)
        raise


def _entry_in_use(*, ticket_id: int, application_name: str) -> TicketEntry | None:
    # The ticket's lock first, as every change of its entries takes it (settle_entry relies
    # on it).
    Ticket.objects.select_for_update(of=("self",)).filter(pk=ticket_id).first()
    return (
        TicketEntry.objects.select_for_update(of=("self",))
        .select_related("ticket")
        .filter(ticket_id=ticket_id, name=application_name, state=TicketEntry.State.IN_USE)
        .first()
    )


def use_grant(
    *, kind: GrantKind, operation_id, ticket_id: int, application_name: str, actor, success: bool
) -> None:
    """The operation applied its change: its entry is settled USED with `success` (which may
    complete the ticket), and the held grant dropped. Inside the operation's transaction."""
    entry = _entry_in_use(ticket_id=ticket_id, application_name=application_name)
    if entry is None:
        # Nothing to settle (no grant was taken for it): the operation's verdict stands.
        logger.warning("%s on ticket %s was not in use when settled", application_name, ticket_id)
        return
    settle_entry(entry=entry, state=TicketEntry.State.USED, actor=actor, success=success)
    try:
        grants.release_all(kind=kind, operation_ids=[operation_id])
    except ServiceUnavailable:
        # A held copy left behind is never taken again (only its operation gives it back).
        logger.warning("The grant held for operation %s is left to expire", operation_id)


def give_back_grant(
    *,
    kind: GrantKind,
    operation_id,
    ticket_id: int,
    application_name: str,
    user,
    **where,
) -> None:
    """The operation applied nothing: its grant goes back for the rest of its lifetime and its
    entry is AUTHORIZED again (the expiry sweep settles it once that lifetime is over).
    Audited with `where` (the operation's own fields). Inside the operation's transaction."""
    entry = _entry_in_use(ticket_id=ticket_id, application_name=application_name)
    if entry is None:
        return
    entry.state = TicketEntry.State.AUTHORIZED
    entry.save(update_fields=["state"])
    put_back = False
    try:
        grant = grants.held_grant(kind=kind, operation_id=operation_id)
        if grant is not None and grant.seconds_left() > 0:
            grants.put_back_all(
                kind=kind, held=[(user.get_username(), application_name, operation_id)]
            )
            put_back = True
            message = (
                f"No change was applied; authorization put back ({grant.seconds_left()} s left)"
            )
        else:
            message = "No change was applied, but the authorization expired meanwhile"
    except ServiceUnavailable:
        # The verdict must not wait on Redis: the grant stays held and expires with its TTL;
        # the entry is AUTHORIZED until the expiry sweep settles it.
        message = "No change was applied, but Redis was away: the authorization expires unused"
    record_events(
        build_event(
            action=Action.AUTHORIZATION_RESTORED,
            actor=user,
            outcome=Outcome.SUCCESS if put_back else Outcome.FAILURE,
            ticket=entry.ticket,
            operation_id=operation_id,
            application_name=application_name,
            message=message,
            **where,
        )
    )


def give_back_unclaimed_grants(
    *, kind: GrantKind, unclaimed: Callable[[list[str]], list[str]], grace_seconds: float
) -> int:
    """Grants held for operations that were never committed (the web process died between
    taking a grant and committing its operation) go back to their owners; returns how many.

    `unclaimed(ids)`: those of `ids` that have no operation. A grant is given back only once it
    was seen so for `grace_seconds` (a request still committing is not cut short), and only
    after the ticket's lock, which the taking transaction holds until it commits, shows its
    operation still missing. Its entry was left AUTHORIZED by the rollback; an entry settled
    meanwhile (revoked, expired) gets nothing back, and the held copy is dropped.
    """
    seen = grants.unclaimed_since(
        kind=kind, operation_ids=unclaimed(grants.held_operation_ids(kind=kind))
    )
    due = [
        operation_id for operation_id, first in seen.items() if time.time() - first >= grace_seconds
    ]
    given = 0
    for operation_id in due:
        with transaction.atomic():
            grant = grants.held_grant(kind=kind, operation_id=operation_id)
            ticket = (
                Ticket.objects.select_for_update(of=("self",))
                .select_related("applicant")
                .filter(pk=grant.ticket_id)
                .first()
                if grant
                else None
            )
            if ticket is not None and unclaimed([operation_id]):
                given += _give_back_unclaimed(kind, grant, ticket=ticket, operation_id=operation_id)
        grants.forget_unclaimed(kind=kind, operation_ids=[operation_id])
    return given


def _give_back_unclaimed(kind: GrantKind, grant: Grant, *, ticket: Ticket, operation_id) -> int:
    entry = ticket.entries.filter(name=grant.application_name).first()
    if entry is None or entry.state != TicketEntry.State.AUTHORIZED or grant.seconds_left() <= 0:
        grants.release_all(kind=kind, operation_ids=[operation_id])
        return 0
    grants.put_back_all(kind=kind, held=[(grant.username, grant.application_name, operation_id)])
    record_events(
        build_event(
            action=Action.AUTHORIZATION_RESTORED,
            actor=ticket.applicant,
            ticket=ticket,
            operation_id=operation_id,
            application_name=grant.application_name,
            message="Held for an operation that was never recorded (its request was cut off); "
            f"authorization put back ({grant.seconds_left()} s left)",
        )
    )
    return 1
