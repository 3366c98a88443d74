"""The token holder against the real Redis: key format, JSON value, TTL, atomic consumption."""

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cratos.exceptions import ServiceUnavailable
from redeploy import authorization
from redeploy.authorization import RedeployToken
from tests.support import consume, redis_down

KEY = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"


def mint(username="alice", application_name="web", ttl_seconds=7200, ticket_id=7):
    return authorization.mint(
        username=username,
        application_name=application_name,
        ticket_id=ticket_id,
        ticket_no=f"20260101{ticket_id:06d}",
        ttl_seconds=ttl_seconds,
    )


def store(redis_client, token: RedeployToken, ttl: int = 600) -> None:
    """Write a hand-made token under its key (for tokens the holder would never mint)."""
    key = authorization.token_key(username=token.username, application_name=token.application_name)
    redis_client.set(key, token.to_json(), ex=ttl)


def token(**overrides) -> RedeployToken:
    fields = {
        "username": "alice",
        "application_name": "web",
        "ticket_id": 7,
        "ticket_no": "20260101000007",
        "expires": datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1),
    }
    return RedeployToken(**(fields | overrides))


def test_key_format_is_the_manuals():
    assert authorization.token_key(username="alice", application_name="web") == KEY


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
    tokens = authorization.mint_all(
        username="alice",
        application_names=["web", "api"],
        ticket_id=3,
        ticket_no="20260101000003",
        ttl_seconds=600,
    )
    assert [t.application_name for t in tokens] == ["web", "api"]
    for name in ("web", "api"):
        key = authorization.token_key(username="alice", application_name=name)
        assert json.loads(redis_client.get(key))["applicationName"] == name
        assert 595 <= redis_client.ttl(key) <= 600
    assert tokens[0].expires == tokens[1].expires


def test_token_json_round_trip():
    original = token()
    assert RedeployToken.from_json(original.to_json()) == original


def test_live_token_returns_the_minted_token():
    minted = mint()
    assert authorization.live_token(username="alice", application_name="web") == minted


@pytest.mark.parametrize(
    ("username", "application_name"),
    [("bob", "web"), ("alice", "api")],
    ids=["other user", "other application"],
)
def test_live_token_is_none_for_another_user_or_application(username, application_name):
    mint()
    assert authorization.live_token(username=username, application_name=application_name) is None


def test_live_token_is_none_when_missing():
    assert authorization.live_token(username="alice", application_name="web") is None


def test_live_token_is_none_once_expires_passed(redis_client):
    store(redis_client, token(expires=datetime.now(UTC) - timedelta(seconds=1)))
    assert authorization.live_token(username="alice", application_name="web") is None


def test_live_token_is_none_when_redis_let_the_key_expire(redis_client):
    mint()
    assert authorization.live_token(username="alice", application_name="web") is not None
    redis_client.pexpire(KEY, 50)
    threading.Event().wait(0.2)
    assert authorization.live_token(username="alice", application_name="web") is None


@pytest.mark.parametrize(
    "tampered",
    [{"username": "bob"}, {"application_name": "api"}, {"valid": False}],
    ids=["other user's value", "other application's value", "not valid"],
)
def test_live_token_refuses_a_value_that_does_not_match_its_key(redis_client, tampered):
    redis_client.set(KEY, token(**tampered).to_json(), ex=600)
    assert authorization.live_token(username="alice", application_name="web") is None


def test_live_token_is_none_for_garbage(redis_client):
    redis_client.set(KEY, "not json", ex=600)
    assert authorization.live_token(username="alice", application_name="web") is None


def test_live_tokens_reads_many_and_skips_missing_ones():
    mint(application_name="web")
    mint(application_name="api")
    tokens = authorization.live_tokens(username="alice", application_names=["web", "db", "api"])
    assert [t.application_name for t in tokens] == ["web", "api"]
    assert authorization.live_tokens(username="alice", application_names=[]) == []


def test_seconds_left():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert token(expires=now + timedelta(seconds=90)).seconds_left(now) == 90
    assert token(expires=now - timedelta(seconds=5)).seconds_left(now) == 0


def test_consume_takes_the_token_once(redis_client):
    minted = mint()
    assert consume(username="alice", application_name="web") == minted
    assert redis_client.exists(KEY) == 0
    assert consume(username="alice", application_name="web") is None


def test_consume_refuses_and_drops_an_expired_token(redis_client):
    store(redis_client, token(expires=datetime.now(UTC) - timedelta(seconds=1)))
    assert consume(username="alice", application_name="web") is None
    assert redis_client.exists(KEY) == 0


def test_consume_of_another_users_key_is_none():
    mint(username="bob")
    assert consume(username="alice", application_name="web") is None
    assert authorization.live_token(username="bob", application_name="web") is not None


def test_consume_is_atomic_under_many_threads():
    mint()
    racers = 24
    barrier = threading.Barrier(racers)
    results, errors = [], []

    def take():
        try:
            barrier.wait(timeout=5)
            results.append(consume(username="alice", application_name="web"))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert len(results) == racers
    assert len([result for result in results if result is not None]) == 1


def test_restore_puts_back_only_the_remaining_lifetime(redis_client):
    taken = token(expires=datetime.now(UTC) + timedelta(seconds=30))
    assert authorization.restore(token=taken) is True
    assert 25 <= redis_client.ttl(KEY) <= 30
    assert authorization.live_token(username="alice", application_name="web") == taken


def test_restore_after_consume_keeps_the_original_expiry(redis_client):
    minted = mint(ttl_seconds=120)
    taken = consume(username="alice", application_name="web")
    assert authorization.restore(token=taken) is True
    assert json.loads(redis_client.get(KEY))["expires"] == json.loads(minted.to_json())["expires"]
    assert redis_client.ttl(KEY) <= 120


def test_restore_never_overwrites_a_newer_token(redis_client):
    old = mint(ticket_id=1)
    consume(username="alice", application_name="web")
    newer = mint(ticket_id=2)
    assert authorization.restore(token=old) is False
    assert authorization.live_token(username="alice", application_name="web") == newer
    assert json.loads(redis_client.get(KEY))["ticketId"] == 2


def test_restore_of_an_expired_token_does_nothing(redis_client):
    assert authorization.restore(token=token(expires=datetime.now(UTC))) is False
    assert redis_client.exists(KEY) == 0


def test_an_authorization_taken_for_an_operation_is_held_for_it_alone(redis_client):
    minted = mint(ttl_seconds=120)
    first, second = uuid.uuid4(), uuid.uuid4()
    held = authorization.held_key(operation_id=first)

    assert authorization.consume_all(wanted=[("alice", "web", first)]) == [minted]
    assert redis_client.exists(KEY) == 0 and 0 < redis_client.ttl(held) <= 120
    # Another operation finds nothing; the same operation (its run killed before the commit,
    # redelivered) finds its authorization again.
    assert authorization.consume_all(wanted=[("alice", "web", second)]) == [None]
    assert authorization.consume_all(wanted=[("alice", "web", first)]) == [minted]

    authorization.release_all(operation_ids=[first])
    assert redis_client.exists(held) == 0
    assert authorization.consume_all(wanted=[("alice", "web", first)]) == [None]


def test_put_back_returns_a_held_authorization_unless_a_newer_one_was_minted(redis_client):
    old = mint(ticket_id=1, ttl_seconds=120)
    web, api = uuid.uuid4(), uuid.uuid4()
    mint(application_name="api", ticket_id=1)
    authorization.consume_all(wanted=[("alice", "web", web), ("alice", "api", api)])
    newer = mint(application_name="api", ticket_id=2)

    authorization.put_back_all(wanted=[("alice", "web", web), ("alice", "api", api)])

    assert authorization.live_token(username="alice", application_name="web") == old
    assert redis_client.ttl(KEY) <= 120  # its own lifetime, not a new one
    assert authorization.live_token(username="alice", application_name="api") == newer
    for operation_id in (web, api):
        assert redis_client.exists(authorization.held_key(operation_id=operation_id)) == 0


def test_revoke_deletes_the_token(redis_client):
    mint()
    assert authorization.revoke(username="alice", application_name="web") is True
    assert redis_client.exists(KEY) == 0
    assert authorization.live_token(username="alice", application_name="web") is None
    assert authorization.revoke(username="alice", application_name="web") is False


@pytest.mark.parametrize(
    "call",
    [
        lambda: mint(),
        lambda: authorization.live_token(username="alice", application_name="web"),
        lambda: authorization.live_tokens(username="alice", application_names=["web"]),
        lambda: consume(username="alice", application_name="web"),
        lambda: authorization.restore(token=token()),
        lambda: authorization.revoke(username="alice", application_name="web"),
    ],
    ids=["mint", "live_token", "live_tokens", "consume", "restore", "revoke"],
)
def test_unreachable_redis_raises_service_unavailable(unreachable_redis, call):
    with pytest.raises(ServiceUnavailable, match="Redis"):
        call()


def test_after_an_outage_the_holder_uses_the_real_redis_again(redis_client):
    with redis_down(), pytest.raises(ServiceUnavailable):
        mint()
    mint()
    assert redis_client.exists(KEY) == 1


def test_the_demos_in_process_store_holds_and_puts_back_alike(settings):
    """Without REDIS_URL (the zero-setup demo) the same rules hold, in this process."""
    settings.REDIS_URL = ""
    minted = mint(ttl_seconds=120)
    first, second = uuid.uuid4(), uuid.uuid4()

    assert authorization.consume_all(wanted=[("alice", "web", first)]) == [minted]
    assert authorization.live_token(username="alice", application_name="web") is None
    assert authorization.consume_all(wanted=[("alice", "web", second)]) == [None]
    assert authorization.consume_all(wanted=[("alice", "web", first)]) == [minted]
    authorization.put_back_all(wanted=[("alice", "web", first)])
    assert authorization.live_token(username="alice", application_name="web") == minted
    assert authorization.consume_all(wanted=[("alice", "web", second)]) == [minted]
    authorization.release_all(operation_ids=[second])
    assert authorization.consume_all(wanted=[("alice", "web", second)]) == [None]
