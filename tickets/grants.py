"""Grants: the time-boxed, single-use authorizations that an approved ticket mints, one per entry.

The one owner of their key space. Each kind of work order registers a GrantKind with its own
key formats (the seed manual's ApplicationRedeployTokenHolder is the APPLICATION_REDEPLOY kind:
`APPLICATION:REDEPLOY:TOKEN:USERNAME:{username}:APPLICATION_NAME:{applicationName}`); the value
is the manual's JSON token, with a TTL of the work order's (7200 s by default).

An operation takes its grant by moving it, atomically, under a key of the operation (held):
of many racing takers exactly one gets it. The held copy keeps the grant's TTL. When the
operation applied its change the copy is released (the grant is used); when it applied
nothing the copy goes back under the grant's key for the rest of its lifetime.
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cratos.exceptions import PermissionRefused

from .grant_stores import call, store

DESC = "Temporary authorization on workOrder"
UNAUTHORIZED_ACCESS = "Unauthorized access"


class UnauthorizedAccess(PermissionRefused):
    """No live grant for this user and application (missing, expired, or used): the manual's
    refusal, word for word."""

    code = "unauthorized_access"
    default_message = UNAUTHORIZED_ACCESS

    def __init__(self, message: str | None = None, *, missing: tuple[str, ...] = ()):
        super().__init__(message)
        self.missing = missing  # the applications without a live grant


@dataclass(frozen=True)
class GrantKind:
    """How one kind of work order keys its grants: the live grant of a user for an application,
    and the grant held for an operation that took it."""

    work_order_key: str
    key_format: str  # with {username} and {application_name}
    held_key_format: str  # with {operation_id}

    def key(self, *, username: str, application_name: str) -> str:
        return self.key_format.format(username=username, application_name=application_name)

    def held_key(self, *, operation_id) -> str:
        return self.held_key_format.format(operation_id=operation_id)

    def operation_of(self, held_key: str) -> str | None:
        """The operation id a held key names, or None for another key."""
        prefix, _, suffix = self.held_key_format.partition("{operation_id}")
        if held_key.startswith(prefix) and held_key.endswith(suffix):
            return held_key[len(prefix) : len(held_key) - len(suffix)] or None
        return None

    @property
    def unclaimed_marker(self) -> str:
        # Where the first sightings of held grants without an operation are noted.
        return f"GRANTS:UNCLAIMED:{self.work_order_key}"


@dataclass(frozen=True)
class Grant:
    """The manual's token: who may do it, to which application, on which ticket, until when."""

    username: str
    application_name: str
    ticket_id: int
    ticket_no: str
    expires: datetime
    valid: bool = True
    desc: str = DESC

    def to_json(self) -> str:
        return json.dumps(
            {
                "username": self.username,
                "applicationName": self.application_name,
                "ticketId": self.ticket_id,
                "ticketNo": self.ticket_no,
                "expires": self.expires.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "valid": self.valid,
                "desc": self.desc,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Grant":
        data = json.loads(raw)
        return cls(
            username=data["username"],
            application_name=data["applicationName"],
            ticket_id=data["ticketId"],
            ticket_no=data["ticketNo"],
            expires=datetime.fromisoformat(data["expires"]),
            valid=data["valid"],
            desc=data.get("desc", DESC),
        )

    def seconds_left(self, now: datetime | None = None) -> int:
        return max(0, int((self.expires - (now or datetime.now(UTC))).total_seconds()))

    def is_live_for(self, *, username: str, application_name: str) -> bool:
        return (
            self.valid
            and self.username == username
            and self.application_name == application_name
            and self.seconds_left() > 0
        )


def _parse(raw) -> Grant | None:
    if raw is None:
        return None
    try:
        return Grant.from_json(raw)
    except (ValueError, KeyError, TypeError):
        return None


def mint_all(
    *,
    kind: GrantKind,
    username: str,
    application_names: list[str],
    ticket_id: int,
    ticket_no: str,
    ttl_seconds: int,
) -> list[Grant]:
    """Write the grants of one approved ticket, all or none, each living `ttl_seconds`.

    A newer grant replaces an older one for the same user and application.
    """
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl_seconds)
    grants = [
        Grant(
            username=username,
            application_name=name,
            ticket_id=ticket_id,
            ticket_no=ticket_no,
            expires=expires,
        )
        for name in application_names
    ]
    values = {
        kind.key(username=username, application_name=grant.application_name): grant.to_json()
        for grant in grants
    }
    call(store().set_all, values, ttl_seconds)
    return grants


def live_grant(*, kind: GrantKind, username: str, application_name: str) -> Grant | None:
    """The user's live grant for that application, or None. One round trip."""
    grant = _parse(
        call(store().get, kind.key(username=username, application_name=application_name))
    )
    if grant and grant.is_live_for(username=username, application_name=application_name):
        return grant
    return None


def live_grants(*, kind: GrantKind, username: str, application_names: list[str]) -> list[Grant]:
    keys = [kind.key(username=username, application_name=name) for name in application_names]
    grants = (_parse(raw) for raw in call(store().get_many, keys))
    return [
        grant
        for grant, name in zip(grants, application_names, strict=True)
        if grant and grant.is_live_for(username=username, application_name=name)
    ]


def take_all(*, kind: GrantKind, username: str, wanted: list[tuple[str, object]]) -> list:
    """Atomically take the user's grants for (application name, operation id) pairs, in one
    round trip: of many racing operations exactly one gets each, held for its operation until
    `release_all` (it was used) or `put_back_all` (it was not). None where there was no live
    one (an operation that took its grant already gets it again)."""
    pairs = [
        (
            kind.key(username=username, application_name=name),
            kind.held_key(operation_id=operation_id),
        )
        for name, operation_id in wanted
    ]
    grants = [_parse(raw) for raw in call(store().hold_many, pairs)] if pairs else []
    return [
        grant if grant and grant.is_live_for(username=username, application_name=name) else None
        for grant, (name, _) in zip(grants, wanted, strict=True)
    ]


def held_grant(*, kind: GrantKind, operation_id) -> Grant | None:
    """The grant held for the operation, if it is still held."""
    return _parse(call(store().get, kind.held_key(operation_id=operation_id)))


def release_all(*, kind: GrantKind, operation_ids: list) -> None:
    """The operations used their grants: drop the held copies."""
    if operation_ids:
        call(store().delete_many, [kind.held_key(operation_id=pk) for pk in operation_ids])


def put_back_all(*, kind: GrantKind, held: list[tuple[str, str, object]]) -> None:
    """The operations of (username, application name, operation id) applied nothing: each held
    grant goes back under its key for the rest of its lifetime, unless a newer one was minted
    there meanwhile."""
    if held:
        pairs = [
            (
                kind.held_key(operation_id=operation_id),
                kind.key(username=username, application_name=name),
            )
            for username, name, operation_id in held
        ]
        call(store().put_back_many, pairs)


def revoke(*, kind: GrantKind, username: str, application_name: str) -> bool:
    return call(store().delete, kind.key(username=username, application_name=application_name))


def held_operation_ids(*, kind: GrantKind) -> list[str]:
    """The ids of the operations that hold a grant of `kind` now."""
    keys = call(store().keys_like, kind.held_key(operation_id="*"))
    return [operation_id for key in keys if (operation_id := kind.operation_of(key))]


def unclaimed_since(*, kind: GrantKind, operation_ids: list[str]) -> dict[str, float]:
    """Note `operation_ids` (held grants whose operation does not exist) as seen now; returns
    when each was first seen (epoch seconds). Ids no longer among them are forgotten."""
    return call(store().first_seen, kind.unclaimed_marker, operation_ids, time.time())


def forget_unclaimed(*, kind: GrantKind, operation_ids: list[str]) -> None:
    call(store().forget, kind.unclaimed_marker, operation_ids)
