"""The grant store against the real Redis (and the demo's in-process stand-in): the manual's
key format, JSON value and TTL, atomic single take, held copies, put back, one key space a kind."""

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from cratos.exceptions import ServiceUnavailable
from redeploy.providers import REDEPLOY_GRANTS
from tests.support import consume, redis_down
from tickets import grant_stores, grants
from tickets.grants import Grant, GrantKind

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
API_KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:api"

# A second kind of work order, with its own key space.
DELETE_POD_GRANTS = GrantKind(
    work_order_key="APPLICATION_DELETE_POD",
    key_format="APPLICATION:DELETE:POD:TOKEN:USERNAME:{username}:APPLICATION_NAME:{application_name}",
    held_key_format="APPLICATION:DELETE:POD:HELD:OPERATION:{operation_id}",
)
DELETE_POD_KEY = "APPLICATION:DELETE:POD:TOKEN:USERNAME:alice:APPLICATION_NAME:web"


def mint(
    username="alice", application_name="web", ttl_seconds=7200, ticket_id=7, kind=REDEPLOY_GRANTS
) -> Grant:
    (grant,) = grants.mint_all(
        kind=kind,
        username=username,
        application_names=[application_name],
        ticket_id=ticket_id,
        ticket_no=f"20260101{ticket_id:06d}",
        ttl_seconds=ttl_seconds,
    )
    return grant


def grant(**overrides) -> Grant:
    fields = {
        "username": "alice",
        "application_name": "web",
        "ticket_id": 7,
        "ticket_no": "20260101000007",
        "expires": datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1),
    }
    return Grant(**(fields | overrides))


def store(redis_client, value: Grant, ttl: int = 600) -> None:
    """Write a hand-made grant under its key (for grants mint_all would never write)."""
    key = REDEPLOY_GRANTS.key(username=value.username, application_name=value.application_name)
    redis_client.set(key, value.to_json(), ex=ttl)


def live(application_name="web", username="alice", kind=REDEPLOY_GRANTS) -> Grant | None:
    return grants.live_grant(kind=kind, username=username, application_name=application_name)


def take(*wanted, username="alice", kind=REDEPLOY_GRANTS) -> list:
    return grants.take_all(kind=kind, username=username, wanted=list(wanted))


def put_back(*held, kind=REDEPLOY_GRANTS) -> None:
    grants.put_back_all(kind=kind, held=list(held))


def held_key(operation_id) -> str:
    return REDEPLOY_GRANTS.held_key(operation_id=operation_id)


def expire_now(redis_client, key: str) -> None:
    """Let Redis expire the key, as its TTL running out would."""
    redis_client.pexpire(key, 20)
    for _ in range(100):
        if not redis_client.exists(key):
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{key} did not expire")


@pytest.fixture
def in_process(settings, monkeypatch):
    """The zero-setup demo: no REDIS_URL, a fresh in-process store on a clock the test moves."""
    settings.REDIS_URL = ""
    monkeypatch.setattr(grant_stores, "_local_store", grant_stores._LocalStore())
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(grant_stores, "time", SimpleNamespace(monotonic=lambda: clock.now))
    return clock


@pytest.fixture(params=["redis", "in-process"])
def either_store(request):
    """The same rules, in Redis and in the demo's in-process store."""
    if request.param == "in-process":
        request.getfixturevalue("in_process")
    return request.param


# The manual's key and value.


def test_the_redeploy_kinds_keys_are_the_manuals():
    assert REDEPLOY_GRANTS.key(username="alice", application_name="web") == KEY
    operation_id = uuid.UUID("00000000-0000-0000-0000-000000000042")
    assert REDEPLOY_GRANTS.held_key(operation_id=operation_id) == (
        "APPLICATION:REDEPLOY:HELD:OPERATION:00000000-0000-0000-0000-000000000042"
    )


def test_mint_writes_the_manuals_json_with_the_ttl(redis_client):
    before = datetime.now(UTC).replace(microsecond=0)
    minted = mint(ttl_seconds=7200)

    value = json.loads(redis_client.get(KEY))
    assert set(value) == {
        "username",
        "applicationName",
        "ticketId",
        "ticketNo",
        "expires",
        "valid",
        "desc",
    }
    assert value["username"] == "alice"
    assert value["applicationName"] == "web"
    assert value["ticketId"] == 7
    assert value["ticketNo"] == "20260101000007"
    assert value["valid"] is True
    assert value["desc"] == "Temporary authorization on workOrder"
    assert value["expires"].endswith("Z")
    expires = datetime.fromisoformat(value["expires"])
    assert expires.utcoffset() == timedelta(0)
    assert expires == minted.expires
    assert timedelta(hours=2) <= expires - before <= timedelta(hours=2, seconds=2)
    assert 7195 <= redis_client.ttl(KEY) <= 7200


def test_mint_all_writes_every_application_with_one_expiry(redis_client):
    minted = grants.mint_all(
        kind=REDEPLOY_GRANTS,
        username="alice",
        application_names=["web", "api"],
        ticket_id=3,
        ticket_no="20260101000003",
        ttl_seconds=600,
    )
    assert [g.application_name for g in minted] == ["web", "api"]
    for name in ("web", "api"):
        key = REDEPLOY_GRANTS.key(username="alice", application_name=name)
        assert json.loads(redis_client.get(key))["applicationName"] == name
        assert 595 <= redis_client.ttl(key) <= 600
    assert minted[0].expires == minted[1].expires


def test_grant_json_round_trip():
    original = grant()
    assert Grant.from_json(original.to_json()) == original


def test_seconds_left():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert grant(expires=now + timedelta(seconds=90)).seconds_left(now) == 90
    assert grant(expires=now - timedelta(seconds=5)).seconds_left(now) == 0


# Reading live grants.


def test_live_grant_returns_the_minted_grant(either_store):
    minted = mint()
    assert live() == minted


@pytest.mark.parametrize(
    ("username", "application_name"),
    [("bob", "web"), ("alice", "api")],
    ids=["other user", "other application"],
)
def test_live_grant_is_none_for_another_user_or_application(username, application_name):
    mint()
    assert live(application_name, username=username) is None


def test_live_grant_is_none_when_missing():
    assert live() is None


def test_live_grant_is_none_once_expires_passed(redis_client):
    store(redis_client, grant(expires=datetime.now(UTC) - timedelta(seconds=1)))
    assert live() is None


def test_live_grant_is_none_when_redis_let_the_key_expire(redis_client):
    mint()
    assert live() is not None
    expire_now(redis_client, KEY)
    assert live() is None


@pytest.mark.parametrize(
    "tampered",
    [{"username": "bob"}, {"application_name": "api"}, {"valid": False}],
    ids=["other user's value", "other application's value", "not valid"],
)
def test_live_grant_refuses_a_value_that_does_not_match_its_key(redis_client, tampered):
    redis_client.set(KEY, grant(**tampered).to_json(), ex=600)
    assert live() is None


def test_live_grant_is_none_for_garbage(redis_client):
    redis_client.set(KEY, "not json", ex=600)
    assert live() is None


def test_live_grants_reads_many_and_skips_missing_ones(either_store):
    mint(application_name="web")
    mint(application_name="api")
    found = grants.live_grants(
        kind=REDEPLOY_GRANTS, username="alice", application_names=["web", "db", "api"]
    )
    assert [g.application_name for g in found] == ["web", "api"]
    assert grants.live_grants(kind=REDEPLOY_GRANTS, username="alice", application_names=[]) == []


# Taking a grant: once, atomically, held for its operation.


def test_a_grant_is_taken_once(redis_client, either_store):
    minted = mint()
    assert consume(username="alice", application_name="web") == minted
    assert live() is None
    assert redis_client.exists(KEY) == 0
    assert consume(username="alice", application_name="web") is None


def test_take_refuses_and_removes_an_expired_grant(redis_client):
    store(redis_client, grant(expires=datetime.now(UTC) - timedelta(seconds=1)))
    assert take(("web", uuid.uuid4())) == [None]
    assert redis_client.exists(KEY) == 0


def test_take_of_another_users_grant_is_none(either_store):
    mint(username="bob")
    assert consume(username="alice", application_name="web") is None
    assert live(username="bob") is not None


def test_take_all_answers_each_application_in_order(either_store):
    web = mint(application_name="web")
    api = mint(application_name="api")
    wanted = [("api", uuid.uuid4()), ("db", uuid.uuid4()), ("web", uuid.uuid4())]
    assert take(*wanted) == [api, None, web]
    assert take() == []


def test_take_is_atomic_under_many_threads(redis_client, either_store):
    mint()
    racers = 24
    barrier = threading.Barrier(racers)
    operation_ids = [uuid.uuid4() for _ in range(racers)]
    results, errors = [], []

    def race(operation_id):
        try:
            barrier.wait(timeout=5)
            results.append(take(("web", operation_id))[0])
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(pk,)) for pk in operation_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert len(results) == racers
    assert len([result for result in results if result is not None]) == 1
    held = [pk for pk in operation_ids if grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=pk)]
    assert len(held) == 1


def test_a_grant_taken_for_an_operation_is_held_for_it_alone(either_store):
    minted = mint(ttl_seconds=120)
    first, second = uuid.uuid4(), uuid.uuid4()

    assert take(("web", first)) == [minted]
    assert live() is None
    assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=first) == minted
    assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=second) is None
    # Another operation finds nothing; the same operation (its run killed before the commit,
    # redelivered) finds its grant again.
    assert take(("web", second)) == [None]
    assert take(("web", first)) == [minted]

    grants.release_all(kind=REDEPLOY_GRANTS, operation_ids=[first])
    assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=first) is None
    assert take(("web", first)) == [None]
    grants.release_all(kind=REDEPLOY_GRANTS, operation_ids=[])


def test_the_held_copy_keeps_the_grants_ttl(redis_client):
    mint(ttl_seconds=120)
    operation_id = uuid.uuid4()
    take(("web", operation_id))
    assert redis_client.exists(KEY) == 0
    assert 115 <= redis_client.ttl(held_key(operation_id)) <= 120


def test_an_operation_holding_its_grant_keeps_it_over_a_newer_one(either_store):
    old = mint(ticket_id=1)
    operation_id = uuid.uuid4()
    take(("web", operation_id))
    newer = mint(ticket_id=2)
    assert take(("web", operation_id)) == [old]
    assert live() == newer


# Putting a held grant back (the operation applied nothing).


def test_put_back_keeps_the_remaining_ttl(redis_client):
    minted = mint(ttl_seconds=7200)
    operation_id = uuid.uuid4()
    take(("web", operation_id))
    redis_client.expire(held_key(operation_id), 30)  # the operation ran for most of it

    put_back(("alice", "web", operation_id))

    assert 25 <= redis_client.ttl(KEY) <= 30
    assert redis_client.exists(held_key(operation_id)) == 0
    assert live() == minted
    assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=operation_id) is None


def test_put_back_keeps_the_original_value(redis_client):
    minted = mint(ttl_seconds=120)
    operation_id = uuid.uuid4()
    take(("web", operation_id))
    put_back(("alice", "web", operation_id))
    assert json.loads(redis_client.get(KEY)) == json.loads(minted.to_json())
    assert 0 < redis_client.ttl(KEY) <= 120


def test_put_back_in_process_keeps_the_remaining_lifetime(in_process):
    minted = mint(ttl_seconds=120)
    operation_id = uuid.uuid4()
    take(("web", operation_id))
    in_process.now += 100
    put_back(("alice", "web", operation_id))
    assert live() == minted
    in_process.now += 19
    assert live() == minted
    in_process.now += 2  # past the 120 s it was minted with, not 120 s after the put back
    assert live() is None
    assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=operation_id) is None


def test_put_back_never_overwrites_a_newer_grant(redis_client, either_store):
    old = mint(ticket_id=1, ttl_seconds=120)
    web, api = uuid.uuid4(), uuid.uuid4()
    mint(application_name="api", ticket_id=1)
    take(("web", web), ("api", api))
    newer = mint(application_name="api", ticket_id=2)

    put_back(("alice", "web", web), ("alice", "api", api))

    assert live("web") == old
    assert live("api") == newer
    for operation_id in (web, api):
        assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=operation_id) is None
    if either_store == "redis":
        assert 0 < redis_client.ttl(KEY) <= 120  # its own lifetime, not a new one, nor none
        assert json.loads(redis_client.get(API_KEY))["ticketId"] == 2
        assert redis_client.exists(held_key(web), held_key(api)) == 0


def test_put_back_of_an_expired_held_copy_puts_nothing_back(redis_client):
    mint(ttl_seconds=120)
    operation_id = uuid.uuid4()
    take(("web", operation_id))
    expire_now(redis_client, held_key(operation_id))

    put_back(("alice", "web", operation_id))

    assert redis_client.exists(KEY) == 0
    assert live() is None


def test_put_back_of_a_released_grant_puts_nothing_back(redis_client, either_store):
    mint()
    operation_id = uuid.uuid4()
    take(("web", operation_id))
    grants.release_all(kind=REDEPLOY_GRANTS, operation_ids=[operation_id])

    put_back(("alice", "web", operation_id))

    assert live() is None
    assert redis_client.exists(KEY) == 0


def test_put_back_returns_the_live_ones_beside_an_expired_one(redis_client):
    mint(application_name="web")
    api = mint(application_name="api")
    web_op, api_op = uuid.uuid4(), uuid.uuid4()
    take(("web", web_op), ("api", api_op))
    expire_now(redis_client, held_key(web_op))

    put_back(("alice", "web", web_op), ("alice", "api", api_op))

    assert live("web") is None
    assert live("api") == api
    assert redis_client.exists(held_key(api_op)) == 0


def test_put_back_in_process_of_an_expired_held_copy_puts_nothing_back(in_process):
    mint(application_name="web", ttl_seconds=60)
    api = mint(application_name="api", ttl_seconds=600)
    web_op, api_op = uuid.uuid4(), uuid.uuid4()
    take(("web", web_op), ("api", api_op))
    in_process.now += 61

    put_back(("alice", "web", web_op), ("alice", "api", api_op))

    assert live("web") is None
    assert grant_stores.store().get(KEY) is None
    assert live("api") == api


# Revoking.


def test_revoke_deletes_the_grant(redis_client, either_store):
    mint()
    assert grants.revoke(kind=REDEPLOY_GRANTS, username="alice", application_name="web") is True
    assert redis_client.exists(KEY) == 0
    assert live() is None
    assert grants.revoke(kind=REDEPLOY_GRANTS, username="alice", application_name="web") is False


# Kinds.


def test_each_kind_keeps_its_own_key_space(redis_client, either_store):
    assert DELETE_POD_GRANTS.key(username="alice", application_name="web") == DELETE_POD_KEY
    redeploy = mint(ticket_id=1)

    # The redeploy grant is never seen, taken nor revoked through the other kind.
    assert live(kind=DELETE_POD_GRANTS) is None
    assert (
        grants.live_grants(kind=DELETE_POD_GRANTS, username="alice", application_names=["web"])
        == []
    )
    assert take(("web", uuid.uuid4()), kind=DELETE_POD_GRANTS) == [None]
    assert grants.revoke(kind=DELETE_POD_GRANTS, username="alice", application_name="web") is False
    assert live() == redeploy

    # And the other way round.
    delete_pod = mint(ticket_id=2, kind=DELETE_POD_GRANTS)
    if either_store == "redis":
        assert json.loads(redis_client.get(DELETE_POD_KEY))["ticketId"] == 2
        assert json.loads(redis_client.get(KEY))["ticketId"] == 1
    assert live() == redeploy
    assert live(kind=DELETE_POD_GRANTS) == delete_pod

    # The same operation id holds one grant of each kind, each released or put back alone.
    operation_id = uuid.uuid4()
    assert take(("web", operation_id)) == [redeploy]
    assert live(kind=DELETE_POD_GRANTS) == delete_pod
    assert grants.held_grant(kind=DELETE_POD_GRANTS, operation_id=operation_id) is None
    assert take(("web", operation_id), kind=DELETE_POD_GRANTS) == [delete_pod]
    assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=operation_id) == redeploy
    assert grants.held_grant(kind=DELETE_POD_GRANTS, operation_id=operation_id) == delete_pod

    # Released through one kind: only that kind's held copy goes.
    grants.release_all(kind=REDEPLOY_GRANTS, operation_ids=[operation_id])
    assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=operation_id) is None
    assert grants.held_grant(kind=DELETE_POD_GRANTS, operation_id=operation_id) == delete_pod

    # Put back through the other: its grant goes back under its own key, and only there.
    put_back(("alice", "web", operation_id), kind=DELETE_POD_GRANTS)
    assert grants.held_grant(kind=DELETE_POD_GRANTS, operation_id=operation_id) is None
    assert live(kind=DELETE_POD_GRANTS) == delete_pod
    assert live() is None

    # Revoking a redeploy grant leaves the delete-pod grant alone.
    mint(ticket_id=3)
    assert grants.revoke(kind=REDEPLOY_GRANTS, username="alice", application_name="web") is True
    assert live() is None
    assert live(kind=DELETE_POD_GRANTS) == delete_pod


# Redis away.

OPERATION_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")


@pytest.mark.parametrize(
    "call",
    [
        lambda: mint(),
        lambda: live(),
        lambda: grants.live_grants(
            kind=REDEPLOY_GRANTS, username="alice", application_names=["web"]
        ),
        lambda: take(("web", OPERATION_ID)),
        lambda: consume(username="alice", application_name="web"),
        lambda: grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=OPERATION_ID),
        lambda: grants.release_all(kind=REDEPLOY_GRANTS, operation_ids=[OPERATION_ID]),
        lambda: put_back(("alice", "web", OPERATION_ID)),
        lambda: grants.revoke(kind=REDEPLOY_GRANTS, username="alice", application_name="web"),
    ],
    ids=[
        "mint_all",
        "live_grant",
        "live_grants",
        "take_all",
        "consume",
        "held_grant",
        "release_all",
        "put_back_all",
        "revoke",
    ],
)
def test_unreachable_redis_raises_service_unavailable(unreachable_redis, call):
    with pytest.raises(ServiceUnavailable, match="Redis"):
        call()


def test_redis_away_changes_nothing(redis_client):
    web = mint(application_name="web", ttl_seconds=600)
    api = mint(application_name="api", ticket_id=8, ttl_seconds=600)
    operation_id = uuid.uuid4()
    take(("api", operation_id))
    before = {key: redis_client.get(key) for key in (KEY, API_KEY, held_key(operation_id))}

    with redis_down():
        for change in (
            lambda: mint(application_name="web", ticket_id=9),
            lambda: take(("web", uuid.uuid4())),
            lambda: grants.release_all(kind=REDEPLOY_GRANTS, operation_ids=[operation_id]),
            lambda: put_back(("alice", "api", operation_id)),
            lambda: grants.revoke(kind=REDEPLOY_GRANTS, username="alice", application_name="web"),
        ):
            with pytest.raises(ServiceUnavailable):
                change()

    assert {key: redis_client.get(key) for key in before} == before
    assert live("web") == web
    assert grants.held_grant(kind=REDEPLOY_GRANTS, operation_id=operation_id) == api
    assert 0 < redis_client.ttl(KEY) <= 600


def test_after_an_outage_the_store_uses_the_real_redis_again(redis_client):
    with redis_down(), pytest.raises(ServiceUnavailable):
        mint()
    mint()
    assert redis_client.exists(KEY) == 1


# The demo's in-process store.


def test_the_demos_in_process_store_holds_and_puts_back_alike(in_process, redis_client):
    """Without REDIS_URL (the zero-setup demo) the same rules hold, in this process."""
    minted = mint(ttl_seconds=120)
    first, second = uuid.uuid4(), uuid.uuid4()

    assert take(("web", first)) == [minted]
    assert live() is None
    assert take(("web", second)) == [None]
    assert take(("web", first)) == [minted]
    put_back(("alice", "web", first))
    assert live() == minted
    assert take(("web", second)) == [minted]
    grants.release_all(kind=REDEPLOY_GRANTS, operation_ids=[second])
    assert take(("web", second)) == [None]
    assert redis_client.keys("*") == []  # none of it in Redis


def test_the_in_process_store_lets_grants_expire_with_their_ttl(in_process):
    minted = mint(ttl_seconds=120)
    in_process.now += 119
    assert live() == minted
    in_process.now += 2
    assert live() is None
    assert take(("web", uuid.uuid4())) == [None]
