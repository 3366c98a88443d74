"""ApplicationRedeployTokenHolder: the one owner of the redeploy authorization keys.

Nothing else reads or writes these keys. With REDIS_URL set they live in Redis as the manual
fixes them (JSON value, TTL = the work order's TTL); without it an in-process store with the
same TTL and atomic-consumption semantics serves the zero-setup demo.

A redeploy consumes its authorization by moving it, atomically, under a key of its operation
(held) until the transaction that records the consumption commits, then drops that copy. A run
killed in between leaves the authorization held, not lost: the redelivered run takes it there.
"""

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings

from cratos.exceptions import ServiceUnavailable

KEY_FORMAT = "APPLICATION:REDEPLOY:TOKEN:USERNAME:{username}:APPLICATION_NAME:{application_name}"
HELD_KEY_FORMAT = "APPLICATION:REDEPLOY:HELD:OPERATION:{operation_id}"
DESC = "Temporary authorization on workOrder"


def token_key(*, username: str, application_name: str) -> str:
    return KEY_FORMAT.format(username=username, application_name=application_name)


def held_key(*, operation_id) -> str:
    return HELD_KEY_FORMAT.format(operation_id=operation_id)


# KEYS: token key, held key, ... in pairs. For each pair, in one atomic step: the authorization
# already held for the operation (a run killed before its commit), else the token moved there
# (RENAME keeps its TTL), else nothing.
HOLD_SCRIPT = """
local values = {}
for i = 1, #KEYS, 2 do
    local value = redis.call('GET', KEYS[i + 1])
    if not value and redis.call('EXISTS', KEYS[i]) == 1 then
        redis.call('RENAME', KEYS[i], KEYS[i + 1])
        value = redis.call('GET', KEYS[i + 1])
    end
    values[#values + 1] = value
end
return values
"""
# KEYS: held key, token key, ... in pairs: the held authorization back under its key, unless a
# newer one was minted there meanwhile (then the held one is dropped).
PUT_BACK_SCRIPT = """
for i = 1, #KEYS, 2 do
    if redis.call('RENAMENX', KEYS[i], KEYS[i + 1]) == 0 then redis.call('DEL', KEYS[i]) end
end
return #KEYS / 2
"""


@dataclass(frozen=True)
class RedeployToken:
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
    def from_json(cls, raw: str | bytes) -> "RedeployToken":
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


class _RedisStore:
    def __init__(self):
        from django_redis import get_redis_connection

        self.client = get_redis_connection("default")
        # Sent by SHA once Redis has them (EVALSHA), loaded again if Redis forgot them.
        self._hold = self.client.register_script(HOLD_SCRIPT)
        self._put_back = self.client.register_script(PUT_BACK_SCRIPT)

    def set(self, key: str, value: str, ttl: int, *, only_if_absent: bool = False) -> bool:
        return bool(self.client.set(key, value, ex=ttl, nx=only_if_absent))

    def set_all(self, values: dict[str, str], ttl: int) -> None:
        # MULTI/EXEC in one round trip: Redis applies all of them or, cut off, none.
        with self.client.pipeline(transaction=True) as pipe:
            for key, value in values.items():
                pipe.set(key, value, ex=ttl)
            pipe.execute()

    def get(self, key: str) -> bytes | None:
        return self.client.get(key)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return self.client.mget(keys) if keys else []

    def hold_many(self, pairs: list[tuple[str, str]]) -> list[bytes | None]:
        # One script, one round trip, atomic: of many racing runs exactly one moves the token.
        values = self._hold(keys=[key for pair in pairs for key in pair])
        return [value or None for value in values]

    def put_back_many(self, pairs: list[tuple[str, str]]) -> None:
        self._put_back(keys=[key for pair in pairs for key in pair])

    def delete_many(self, keys: list[str]) -> None:
        self.client.delete(*keys)

    def delete(self, key: str) -> bool:
        return bool(self.client.delete(key))


class _LocalStore:
    """In-process stand-in for Redis (demo only): same TTL and take-once semantics."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict[str, tuple[str, float]] = {}

    def _live(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._items[key]
            return None
        return item[0]

    def set(self, key: str, value: str, ttl: int, *, only_if_absent: bool = False) -> bool:
        with self._lock:
            if only_if_absent and self._live(key) is not None:
                return False
            self._items[key] = (value, time.monotonic() + ttl)
            return True

    def set_all(self, values: dict[str, str], ttl: int) -> None:
        with self._lock:
            expires = time.monotonic() + ttl
            self._items.update((key, (value, expires)) for key, value in values.items())

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def get_many(self, keys: list[str]) -> list[str | None]:
        with self._lock:
            return [self._live(key) for key in keys]

    def hold_many(self, pairs: list[tuple[str, str]]) -> list[str | None]:
        with self._lock:
            values = []
            for key, held in pairs:
                if self._live(held) is None and self._live(key) is not None:
                    self._items[held] = self._items.pop(key)
                values.append(self._live(held))
            return values

    def put_back_many(self, pairs: list[tuple[str, str]]) -> None:
        with self._lock:
            for held, key in pairs:
                item = self._items.pop(held, None)
                if item is not None and self._live(key) is None:
                    self._items[key] = item

    def delete_many(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._items.pop(key, None)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._items.pop(key, None) is not None


_local_store = _LocalStore()


# One store per Redis URL, so a check does not look the client up again (tests point REDIS_URL
# elsewhere to take Redis away; that URL gets its own store).
_redis_stores: dict[str, _RedisStore] = {}


def _store():
    url = settings.REDIS_URL
    if not url:
        return _local_store
    store = _redis_stores.get(url)
    if store is None:
        store = _redis_stores.setdefault(url, _RedisStore())
    return store


def _call(operation, *args, **kwargs):
    try:
        return operation(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceUnavailable(
            "The authorization store (Redis) is not answering; nothing was changed. Try again."
        ) from exc


def _parse(raw) -> RedeployToken | None:
    if raw is None:
        return None
    try:
        return RedeployToken.from_json(raw)
    except (ValueError, KeyError, TypeError):
        return None


def mint_all(
    *,
    username: str,
    application_names: list[str],
    ticket_id: int,
    ticket_no: str,
    ttl_seconds: int,
) -> list[RedeployToken]:
    """Write the authorizations of one approved ticket, all or none, each living `ttl_seconds`.

    A newer authorization replaces an older one for the same user and application.
    """
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl_seconds)
    tokens = [
        RedeployToken(
            username=username,
            application_name=name,
            ticket_id=ticket_id,
            ticket_no=ticket_no,
            expires=expires,
        )
        for name in application_names
    ]
    values = {
        token_key(username=username, application_name=token.application_name): token.to_json()
        for token in tokens
    }
    _call(_store().set_all, values, ttl_seconds)
    return tokens


def mint(
    *, username: str, application_name: str, ticket_id: int, ticket_no: str, ttl_seconds: int
) -> RedeployToken:
    (token,) = mint_all(
        username=username,
        application_names=[application_name],
        ticket_id=ticket_id,
        ticket_no=ticket_no,
        ttl_seconds=ttl_seconds,
    )
    return token


def live_token(*, username: str, application_name: str) -> RedeployToken | None:
    """The caller's live authorization for that application, or None. One round trip."""
    key = token_key(username=username, application_name=application_name)
    token = _parse(_call(_store().get, key))
    if token and token.is_live_for(username=username, application_name=application_name):
        return token
    return None


def live_tokens(*, username: str, application_names: list[str]) -> list[RedeployToken]:
    keys = [token_key(username=username, application_name=name) for name in application_names]
    tokens = (_parse(raw) for raw in _call(_store().get_many, keys))
    return [
        token
        for token, name in zip(tokens, application_names, strict=True)
        if token and token.is_live_for(username=username, application_name=name)
    ]


def consume_all(*, wanted: list[tuple[str, str, object]]) -> list[RedeployToken | None]:
    """Atomically take the authorizations of (username, application name, operation id)
    triples, in one round trip: of many racing operations exactly one gets each. Each is held
    for its operation until `release_all` (after the consumption is committed) or `put_back_all`
    (it was not); an operation whose earlier run was killed meanwhile gets its held one back.
    None where there was no live one."""
    pairs = [
        (token_key(username=user, application_name=name), held_key(operation_id=operation_id))
        for user, name, operation_id in wanted
    ]
    tokens = [_parse(raw) for raw in _call(_store().hold_many, pairs)] if pairs else []
    return [
        token if token and token.is_live_for(username=user, application_name=name) else None
        for token, (user, name, _) in zip(tokens, wanted, strict=True)
    ]


def release_all(*, operation_ids: list) -> None:
    """The consumptions are committed: drop the held copies (left behind, they only expire)."""
    if operation_ids:
        keys = [held_key(operation_id=operation_id) for operation_id in operation_ids]
        _call(_store().delete_many, keys)


def put_back_all(*, wanted: list[tuple[str, str, object]]) -> None:
    """The consumptions were not committed: each held authorization goes back under its key
    with its remaining lifetime, unless a newer one was minted there meanwhile."""
    if wanted:
        pairs = [
            (held_key(operation_id=operation_id), token_key(username=user, application_name=name))
            for user, name, operation_id in wanted
        ]
        _call(_store().put_back_many, pairs)


def restore(*, token: RedeployToken) -> bool:
    """Put a consumed authorization back with its remaining lifetime (never extends it)."""
    seconds_left = token.seconds_left()
    if seconds_left <= 0:
        return False
    key = token_key(username=token.username, application_name=token.application_name)
    return _call(_store().set, key, token.to_json(), seconds_left, only_if_absent=True)


def revoke(*, username: str, application_name: str) -> bool:
    key = token_key(username=username, application_name=application_name)
    return _call(_store().delete, key)
