"""Where grants live: Redis (django-redis) in production and tests, or an in-process stand-in with
the same TTL and take-once semantics for the zero-setup demo. Only tickets.grants uses these."""

import fnmatch
import threading
import time

import redis
from django.conf import settings
from django_redis import get_redis_connection

from cratos.exceptions import ServiceUnavailable

# KEYS: key, held key, ... in pairs. For each pair, in one atomic step: the grant already held
# for the operation, else the grant moved there (RENAME keeps its TTL), else nothing.
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
# KEYS: held key, key, ... in pairs: the held grant back under its key with the TTL it had left,
# unless a newer one was minted there meanwhile (then the held one is dropped); a held copy
# gone meanwhile (expired, released) puts nothing back.
PUT_BACK_SCRIPT = """
for i = 1, #KEYS, 2 do
    if redis.call('EXISTS', KEYS[i]) == 1
        and redis.call('RENAMENX', KEYS[i], KEYS[i + 1]) == 0 then
        redis.call('DEL', KEYS[i])
    end
end
return #KEYS / 2
"""


class _RedisStore:
    def __init__(self):
        self.client = get_redis_connection("default")
        # Sent by SHA once Redis has them (EVALSHA), loaded again if Redis forgot them.
        self._hold = self.client.register_script(HOLD_SCRIPT)
        self._put_back = self.client.register_script(PUT_BACK_SCRIPT)

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

    def keys_like(self, pattern: str) -> list[str]:
        return [key.decode() for key in self.client.scan_iter(match=pattern, count=500)]

    def first_seen(self, marker: str, fields: list[str], now: float) -> dict[str, float]:
        # MULTI/EXEC: the sightings kept are exactly `fields`, each with its first time.
        with self.client.pipeline(transaction=True) as pipe:
            for field in fields:
                pipe.hsetnx(marker, field, now)
            pipe.hgetall(marker)
            seen = pipe.execute()[-1]
        gone = [field for field in seen if field.decode() not in fields]
        if gone:
            self.client.hdel(marker, *gone)
        return {field.decode(): float(value) for field, value in seen.items() if field not in gone}

    def forget(self, marker: str, fields: list[str]) -> None:
        if fields:
            self.client.hdel(marker, *fields)


class _LocalStore:
    """In-process stand-in for Redis (demo only): same TTL and take-once semantics."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict[str, tuple[str, float]] = {}
        self._sightings: dict[str, dict[str, float]] = {}

    def _live(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._items[key]
            return None
        return item[0]

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

    def keys_like(self, pattern: str) -> list[str]:
        with self._lock:
            return [key for key in list(self._items) if fnmatch.fnmatchcase(key, pattern)]

    def first_seen(self, marker: str, fields: list[str], now: float) -> dict[str, float]:
        with self._lock:
            seen = self._sightings.setdefault(marker, {})
            kept = {field: seen.get(field, now) for field in fields}
            self._sightings[marker] = kept
            return dict(kept)

    def forget(self, marker: str, fields: list[str]) -> None:
        with self._lock:
            for field in fields:
                self._sightings.get(marker, {}).pop(field, None)


_local_store = _LocalStore()


# One store per Redis URL, so a check does not look the client up again (tests point REDIS_URL
# elsewhere to take Redis away; that URL gets its own store).
_redis_stores: dict[str, _RedisStore] = {}


def store():
    url = settings.REDIS_URL
    if not url:
        return _local_store
    found = _redis_stores.get(url)
    if found is None:
        found = _redis_stores.setdefault(url, _RedisStore())
    return found


def call(operation, *args, **kwargs):
    """Run a store operation; Redis away is ServiceUnavailable, with nothing changed."""
    try:
        return operation(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceUnavailable(
            "The authorization store (Redis) is not answering; nothing was changed. Try again."
        ) from exc
