"""The login throttle counts each attempt before its password is checked, so that a parallel
burst is checked at most up to the limit; each scope (user name from an address, user name,
address) has its own limit, and every lockout is audited."""

import threading

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.signals import user_login_failed
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse

from cratos.audit.models import AuditEvent
from tests.factories import UserFactory

PASSWORD = "pw-for-tests-123"  # UserFactory's
BURST = 30


class SlowHasher(PBKDF2PasswordHasher):
    """Slow enough (tens of ms) that a burst's attempts overlap in their password checks."""

    iterations = 60_000


def sign_in(client, username, password, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


@pytest.fixture
def checked_passwords():
    """The attempts whose password was checked (and was wrong), as Django reports them."""
    checked = []

    def count(sender, credentials, **kwargs):
        checked.append(credentials.get("username"))

    user_login_failed.connect(count)
    yield checked
    user_login_failed.disconnect(count)


def test_a_parallel_burst_is_checked_at_most_up_to_the_limit(
    transactional_db, settings, checked_passwords
):
    settings.PASSWORD_HASHERS = ["tests.cratos.test_login_throttle.SlowHasher"]
    UserFactory(username="alice")
    start = threading.Barrier(BURST)
    statuses = []

    def attempt():
        try:
            client = Client()
            start.wait()
            statuses.append(sign_in(client, "alice", "wrong").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(statuses) == BURST
    assert 0 < len(checked_passwords) <= settings.LOGIN_FAILURE_LIMIT
    assert statuses.count(429) == BURST - len(checked_passwords)
    assert AuditEvent.objects.filter(action="login.locked").count() == 1


@pytest.mark.django_db
def test_a_lockout_is_audited_with_the_name_tried_and_the_address(client):
    for _ in range(5):
        sign_in(client, "Mallory-Typed-This", "wrong", REMOTE_ADDR="203.0.113.9")

    event = AuditEvent.objects.get(action="login.locked")
    assert event.outcome == "FAILURE"
    assert event.actor is None
    assert event.actor_username == "Mallory-Typed-This"
    assert event.request_ip == "203.0.113.9"
    assert "15 min" in event.message
    assert "5 attempts per pair" in event.message


@pytest.mark.django_db
@override_settings(LOGIN_ACCOUNT_LIMIT=8)
def test_guesses_spread_over_addresses_lock_the_user_name(checked_passwords):
    UserFactory(username="alice")
    for number in range(8):
        client = Client(REMOTE_ADDR=f"198.51.100.{number}")
        assert sign_in(client, "alice", "wrong").status_code == 200

    # From a ninth address, even the right password is not checked now.
    response = sign_in(Client(REMOTE_ADDR="198.51.100.99"), "alice", PASSWORD)

    assert response.status_code == 429
    assert len(checked_passwords) == 8
    assert AuditEvent.objects.get(action="login.locked").message.endswith("8 attempts per account")


@pytest.mark.django_db
@override_settings(LOGIN_ADDRESS_LIMIT=6)
def test_one_address_trying_many_user_names_is_locked():
    UserFactory(username="bob")
    attacker = Client(REMOTE_ADDR="203.0.113.5")
    for number in range(6):
        assert sign_in(attacker, f"user{number}", "wrong").status_code == 200

    assert sign_in(attacker, "bob", PASSWORD).status_code == 429
    # Elsewhere bob signs in.
    assert sign_in(Client(REMOTE_ADDR="203.0.113.6"), "bob", PASSWORD).status_code == 302


@pytest.mark.django_db
@override_settings(LOGIN_ADDRESS_LIMIT=3)
def test_sign_ins_that_succeed_do_not_count_against_the_address():
    for name in ("alice", "bob", "carol", "dave"):
        UserFactory(username=name)
        client = Client(REMOTE_ADDR="10.1.1.1")  # one office NAT
        assert sign_in(client, name, PASSWORD).status_code == 302
