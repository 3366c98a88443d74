"""Restarts in flight: the PostgreSQL advisory locks a run holds on the targets it claimed.

A run holds the lock of each target from its claim until it recorded the outcome. Another run
of the same task (a redelivery, perhaps at the same instant) or the reconciler looks at a
claimed target only when it can take that lock: a run that holds it is alive and records the
outcome itself, while a run that died lost its database session, and the lock with it.
Without the lock, a redelivered run judged a PATCH still on its way as "interrupted", and the
target failed although its restart landed.

Session locks, keyed (LOCKS, target id): they outlive the claim's transaction. The ORM calls
PostgreSQL's lock functions (Func) on the targets' rows, for it has no words for them.
Databases without advisory locks (SQLite, the demo's, whose tasks run in its own process)
hold nothing and find every target free, as before.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

from django.db import DatabaseError, connection
from django.db.models import BooleanField, F, Func, IntegerField, Value
from django.db.models.functions import Cast, Mod

from .models import RedeployTarget

LOCKS = 0x52445054  # the first key of every lock here ("RDPT"); the second is the target's id
# The second key is a 32-bit integer: ids past it wrap, and two targets two billion apart
# sharing a lock only makes a run leave the other to the reconciler.
KEY = Cast(Mod(F("pk"), Value(2**31 - 1)), IntegerField())


def _locks() -> bool:
    return connection.vendor == "postgresql"


def _each(function: str, target_ids: Sequence[int]) -> list[bool]:
    """PostgreSQL's advisory-lock `function` called on each target's key, through the ORM."""
    call = Func(Value(LOCKS), KEY, function=function, output_field=BooleanField())
    return list(
        RedeployTarget.objects.filter(pk__in=target_ids).order_by("pk").values_list(call, flat=True)
    )


def hold(target_ids: Sequence[int]) -> None:
    """Held by this run until `release`: take it in the transaction that claims the targets,
    so no other run sees a claim before its lock. Never waits: a target just claimed is held
    by nobody else, and a claim must not hang on a lock some stray session kept."""
    if target_ids and _locks():
        _each("pg_try_advisory_lock", target_ids)


def release(target_ids: Sequence[int]) -> None:
    """Let go of what `hold` took. With the session gone (a database cut), its locks are gone
    too, so a failure here changes nothing and must not hide the error that ended the run."""
    if not (target_ids and _locks()):
        return
    with suppress(DatabaseError):
        _each("pg_advisory_unlock", target_ids)


@contextmanager
def unless_held(target_id: int) -> Iterator[bool]:
    """True, and the target held by this run within the block, when no live run holds it;
    False when one does (it will record the outcome)."""
    if not _locks():
        yield True
        return
    taken = _each("pg_try_advisory_lock", [target_id]) == [True]
    try:
        yield taken
    finally:
        if taken:
            release([target_id])
