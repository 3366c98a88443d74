"""Local passwords beside the company login: for everyone (the demo), superusers only or nobody,
with named exceptions (a break-glass account)."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"  # UserFactory's


def sign_in(client, username):
    return client.post(reverse("login"), {"username": username, "password": PASSWORD})


def signed_in(client) -> bool:
    return client.get(reverse("tickets:list")).status_code == 200


def test_everyone_by_default(client):
    UserFactory(username="alice")

    assert sign_in(client, "alice").status_code == 302
    assert signed_in(client)


def test_superusers_only(client, settings):
    settings.LOCAL_PASSWORDS = "superusers"
    UserFactory(username="alice")
    UserFactory(username="root", is_staff=True, is_superuser=True)

    refused = sign_in(client, "alice")
    assert refused.status_code == 200
    assert "Please enter a correct username and password" in refused.content.decode()
    assert sign_in(client, "root").status_code == 302


def test_nobody_but_the_named_accounts(client, settings):
    settings.LOCAL_PASSWORDS = "none"
    settings.LOCAL_PASSWORD_USERS = ["breakglass"]
    UserFactory(username="root", is_staff=True, is_superuser=True)
    UserFactory(username="breakglass", is_staff=True, is_superuser=True)

    assert sign_in(client, "root").status_code == 200
    assert sign_in(client, "breakglass").status_code == 302


def test_switching_local_passwords_off_ends_their_sessions(client, settings):
    UserFactory(username="alice")
    sign_in(client, "alice")

    settings.LOCAL_PASSWORDS = "none"

    assert not signed_in(client)


def test_an_unknown_policy_fails_the_system_check(settings):
    settings.LOCAL_PASSWORDS = "some"

    with pytest.raises(SystemCheckError, match="LOCAL_PASSWORDS"):
        call_command("check")


def test_a_company_login_configured_by_halves_fails_the_system_check(settings):
    settings.OIDC_RP_CLIENT_ID = "cratos"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "https://sso.example.com/auth"

    with pytest.raises(SystemCheckError, match="OIDC_OP_TOKEN_ENDPOINT, OIDC_OP_USER_ENDPOINT"):
        call_command("check")
