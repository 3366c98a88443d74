"""Reads behind the audit pages: who may review, keyset pages, exports and per-object trails.

The audit log grows without bound, so every read here is shaped for an index on
(field, created_at DESC, id DESC): an ordering that ends in (created_at, id), a LIMIT, and
never a COUNT(*) over the table.
"""

import base64
import binascii
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from urllib.parse import urlencode

from django.db.models import Q, QuerySet

from .models import AuditEvent

REVIEWERS_GROUP = "Reviewers"
# The trail shown on a ticket's or an application's own page; the rest is one click away.
TRAIL_LIMIT = 20
# An export is one HTTP response: past this many rows a reviewer narrows the filters instead.
EXPORT_MAX_ROWS = 50_000


def may_review_audit(*, user) -> bool:
    """Reviewers read the audit log: the view permission or membership of the Reviewers group."""
    if not user.is_authenticated:
        return False
    # Asked by the view and again by the menu of the same page: remember it on the user, as
    # Django remembers permissions.
    if not hasattr(user, "_may_review_audit"):
        user._may_review_audit = (
            user.has_perm("audit.view_auditevent")
            or user.groups.filter(name=REVIEWERS_GROUP).exists()
        )
    return user._may_review_audit


def audit_events() -> QuerySet[AuditEvent]:
    """Every event, newest first; the filters and the pages narrow it."""
    return AuditEvent.objects.order_by("-created_at", "-id")


@dataclass(frozen=True)
class KeysetPage:
    events: list[AuditEvent]
    next_cursor: str | None
    previous_cursor: str | None

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_cursor is not None


def _field_names(ordering: Sequence[str]) -> list[tuple[str, bool]]:
    return [(key.lstrip("-"), key.startswith("-")) for key in ordering]


def encode_cursor(*, sort: str, event: AuditEvent, ordering: Sequence[str]) -> str:
    values = []
    for name, _descending in _field_names(ordering):
        value = getattr(event, name)
        values.append(value.isoformat() if isinstance(value, datetime) else value)
    raw = json.dumps([sort, values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(*, cursor: str, sort: str, ordering: Sequence[str]) -> list | None:
    """The boundary values in a cursor; None when it is malformed or made for another sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, values = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        return None
    fields = _field_names(ordering)
    if cursor_sort != sort or not isinstance(values, list) or len(values) != len(fields):
        return None
    decoded = []
    for (name, _descending), value in zip(fields, values, strict=True):
        model_field = AuditEvent._meta.get_field(name)
        try:
            if model_field.get_internal_type() == "DateTimeField":
                value = datetime.fromisoformat(value)
                if value.tzinfo is None:
                    return None
                # In UTC, as the database compares it: 0001-01-01T00:00+14:00 is no date there.
                value = value.astimezone(UTC)
            elif model_field.get_internal_type() in ("BigAutoField", "AutoField"):
                if not isinstance(value, int) or isinstance(value, bool):
                    return None
            elif not isinstance(value, str):
                return None
        except (TypeError, ValueError, OverflowError):
            return None
        decoded.append(value)
    return decoded


def _beyond(ordering: Sequence[str], values: list, *, forward: bool) -> Q:
    """Rows strictly after (forward) or before the boundary row in `ordering`.

    Written as "a > x OR (a = x AND b > y) OR ..." plus the redundant "a >= x", because that
    leading bound is what lets PostgreSQL start the index scan at the boundary instead of
    walking (and discarding) every row of the earlier pages.
    """
    fields = _field_names(ordering)
    steps = []
    for position, (name, descending) in enumerate(fields):
        lookup = "lt" if descending == forward else "gt"
        step = Q(**{f"{name}__{lookup}": values[position]})
        for (earlier, _), earlier_value in zip(fields[:position], values[:position], strict=True):
            step &= Q(**{earlier: earlier_value})
        steps.append(step)
    first_name, first_descending = fields[0]
    bound = "lte" if first_descending == forward else "gte"
    return Q(**{f"{first_name}__{bound}": values[0]}) & reduce(operator.or_, steps)


def _opposite(ordering: Sequence[str]) -> list[str]:
    return [key[1:] if key.startswith("-") else f"-{key}" for key in ordering]


def audit_event_page(
    *,
    events: QuerySet[AuditEvent],
    sort: str,
    ordering: Sequence[str],
    per_page: int,
    after: str | None = None,
    before: str | None = None,
) -> KeysetPage:
    """One page of `events` in `ordering` (which must end in a unique key), found by cursor.

    `after` continues past the last row of a page, `before` goes back from the first row of
    one; a bad or foreign cursor gives the first page. One query, LIMIT per_page + 1, whatever
    the table's size.
    """
    boundary = None
    forward = True
    for cursor, direction in ((after, True), (before, False)):
        if cursor:
            boundary = decode_cursor(cursor=cursor, sort=sort, ordering=ordering)
            if boundary is not None:
                forward = direction
                break

    if boundary is None:
        rows = list(events.order_by(*ordering)[: per_page + 1])
        more, has_previous = len(rows) > per_page, False
        rows = rows[:per_page]
        has_next = more
    elif forward:
        query = events.filter(_beyond(ordering, boundary, forward=True)).order_by(*ordering)
        rows = list(query[: per_page + 1])
        has_next, has_previous = len(rows) > per_page, True
        rows = rows[:per_page]
    else:
        query = events.filter(_beyond(ordering, boundary, forward=False))
        rows = list(query.order_by(*_opposite(ordering))[: per_page + 1])
        has_next, has_previous = True, len(rows) > per_page
        rows = rows[:per_page][::-1]

    def cursor_of(event: AuditEvent) -> str:
        return encode_cursor(sort=sort, event=event, ordering=ordering)

    return KeysetPage(
        events=rows,
        next_cursor=cursor_of(rows[-1]) if rows and has_next else None,
        previous_cursor=cursor_of(rows[0]) if rows and has_previous else None,
    )


def audit_events_for_export(
    *, events: QuerySet[AuditEvent], ordering: Sequence[str], limit: int | None = None
) -> tuple[QuerySet[AuditEvent], bool]:
    """The first `limit` (EXPORT_MAX_ROWS) rows of `events` in `ordering`, and whether more
    rows matched."""
    limit = limit or EXPORT_MAX_ROWS
    ordered = events.order_by(*ordering)
    truncated = ordered.values_list("pk", flat=True)[limit : limit + 1].exists()
    return ordered[:limit], truncated


@dataclass(frozen=True)
class AuditTrail:
    """The newest events of one ticket or application, for that object's own page."""

    events: list[AuditEvent]
    has_more: bool
    # The /audit/ query string that lists the whole trail.
    audit_query: str


def _trail(events: QuerySet[AuditEvent], *, limit: int, audit_query: dict) -> AuditTrail:
    rows = list(events.order_by("-created_at", "-id")[: limit + 1])
    return AuditTrail(
        events=rows[:limit], has_more=len(rows) > limit, audit_query=urlencode(audit_query)
    )


def audit_events_for_ticket(*, ticket, limit: int = TRAIL_LIMIT) -> AuditTrail:
    return _trail(
        AuditEvent.objects.filter(ticket_no=ticket.ticket_no),
        limit=limit,
        audit_query={"ticket_no": ticket.ticket_no},
    )


def audit_events_for_application(*, application_name: str, limit: int = TRAIL_LIMIT) -> AuditTrail:
    return _trail(
        AuditEvent.objects.filter(application_name=application_name),
        limit=limit,
        audit_query={"application": application_name},
    )
