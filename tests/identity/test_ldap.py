"""Sign-in against a real OpenLDAP (slapd, seeded from directory.ldif): the service account
finds the person, their password is checked by binding as them, their groups give their roles
and teams, again at every sign-in; StartTLS and ldaps:// verify the server's certificate."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from cratos.audit.models import AuditEvent
from cratos.identity.ldap_config import ldap_connection_options

pytestmark = pytest.mark.django_db
User = get_user_model()


def sign_in(client, username, password="directory-pw"):
    return client.post(reverse("login"), {"username": username, "password": password})


def access(username) -> tuple[set[str], set[str]]:
    user = User.objects.get(username=username)
    return (
        set(user.groups.values_list("name", flat=True)),
        set(user.teams.values_list("name", flat=True)),
    )


def test_a_person_of_the_directory_signs_in_and_is_created(client, ldap_login):
    response = sign_in(client, "bob")

    assert response.status_code == 302
    bob = User.objects.get(username="bob")
    assert (bob.first_name, bob.last_name, bob.email) == ("Bob", "Baker", "bob@cratos.test")
    assert not bob.has_usable_password()  # the directory keeps it
    assert access("bob") == ({"Approvers"}, {"shop"})
    assert bob.is_staff  # approvers decide in the admin
    # An approver lands on the approvals queue.
    assert client.get(response["Location"]).url == reverse("tickets:approvals")
    event = AuditEvent.objects.get(action="identity.access_changed", actor=bob)
    assert event.message == "Signed in through LDAP: role +Approvers, team +shop, staff on."


def test_each_group_gives_its_role_and_team(client, ldap_login):
    for username in ("alice", "carol", "erin"):
        assert sign_in(client, username).status_code == 302

    assert access("alice") == ({"Requesters"}, {"shop"})
    assert access("erin") == ({"Requesters"}, {"payments"})
    assert access("carol") == ({"Reviewers"}, set())
    assert not User.objects.get(username="carol").is_staff


def test_a_removed_group_takes_effect_at_the_next_sign_in(client, ldap_login):
    ldap_login.add_person("frank", "cratos-approvers", "team-shop")
    try:
        sign_in(client, "frank")
        assert access("frank") == ({"Approvers"}, {"shop"})
        client.logout()

        ldap_login.remove_member("cratos-approvers", "frank")
        ldap_login.remove_member("team-shop", "frank")
        ldap_login.add_member("cratos-requesters", "frank")
        assert sign_in(client, "frank").status_code == 302
    finally:
        ldap_login.delete_person("frank")

    assert access("frank") == ({"Requesters"}, set())
    assert not User.objects.get(username="frank").is_staff
    assert AuditEvent.objects.filter(action="identity.access_changed").first().message == (
        "Signed in through LDAP: role +Requesters, role -Approvers, team -shop, staff off."
    )


def test_a_wrong_password_or_an_unknown_person_is_refused(client, ldap_login):
    assert sign_in(client, "bob", "wrong").status_code == 200
    assert sign_in(client, "nobody").status_code == 200
    assert not User.objects.filter(username__in=["bob", "nobody"]).exists()


def test_a_directory_that_does_not_answer_refuses_the_sign_in(client, ldap_login, settings):
    settings.AUTH_LDAP_SERVER_URI = "ldap://127.0.0.1:1"  # nothing listens on port 1

    response = sign_in(client, "alice")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_failed_directory_sign_ins_are_throttled(client, ldap_login):
    for _ in range(5):
        assert sign_in(client, "alice", "wrong").status_code == 200

    # Locked before the directory is asked: the right password does not help now.
    assert sign_in(client, "alice").status_code == 429


def test_local_passwords_off_leaves_the_directory(client, ldap_login, settings):
    settings.LOCAL_PASSWORDS = "none"

    assert sign_in(client, "alice").status_code == 302


def test_starttls_verifies_the_servers_certificate(client, ldap_login, settings):
    settings.AUTH_LDAP_START_TLS = True

    assert sign_in(client, "alice").status_code == 302
    client.logout()

    # Without the CA that signed the server's certificate, no password goes out.
    settings.AUTH_LDAP_CONNECTION_OPTIONS = ldap_connection_options(ca_file="", timeout=5)
    assert sign_in(client, "bob").status_code == 200
    assert not User.objects.filter(username="bob").exists()


def test_ldaps(client, ldap_login, settings):
    settings.AUTH_LDAP_SERVER_URI = ldap_login.ldaps_uri

    assert sign_in(client, "alice").status_code == 302


def test_a_deactivated_person_is_refused_though_the_directory_knows_them(client, ldap_login):
    User.objects.create_user("erin", is_active=False)

    assert sign_in(client, "erin").status_code == 200
    assert access("erin") == (set(), set())
