"""Sign-in through a real OpenID provider (npm oidc-provider on loopback, tests/oidc): the
authorization code flow with PKCE, through the provider's own login page, back to the product,
which fetches the tokens and the userinfo from the provider over HTTP."""

import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.urls import reverse

from .servers import OpenIDProvider

pytestmark = pytest.mark.django_db
User = get_user_model()
SERVER = "http://testserver"


def sign_in(client, username, password=OpenIDProvider.PASSWORD, **query):
    """As a browser would: the product's sign-in link, the provider's login page (its form, with
    the password), then the provider's redirect to the product's callback. Returns the
    product's last response, or the provider's page where the sign-in stopped."""
    url = client.get(reverse("oidc_authentication_init"), query)["Location"]
    browser = requests.Session()
    while not url.startswith(f"{SERVER}/"):
        response = browser.get(url, allow_redirects=False, timeout=5)
        if response.status_code == 200:  # the provider's login page
            action = re.search(r'<form method="post" action="([^"]+)"', response.text)[1]
            response = browser.post(
                urljoin(url, action),
                data={"username": username, "password": password},
                allow_redirects=False,
                timeout=5,
            )
            if response.status_code == 200:
                return response
        url = urljoin(url, response.headers["Location"])
    return client.get(url.removeprefix(SERVER))


def access(username) -> tuple[set[str], set[str]]:
    user = User.objects.get(username=username)
    return (
        set(user.groups.values_list("name", flat=True)),
        set(user.teams.values_list("name", flat=True)),
    )


def test_the_login_page_offers_the_provider(client, oidc_login):
    page = client.get(reverse("login"), {"next": "/audit/"}).content.decode()

    assert 'href="/oidc/authenticate/?next=/audit/"' in page
    assert "Sign in with Test IdP" in page


def test_without_a_provider_there_is_no_such_sign_in(client):
    assert "Sign in with" not in client.get(reverse("login")).content.decode()
    assert client.get(reverse("oidc_authentication_init")).status_code == 404


def test_the_authorization_request_is_a_code_flow_with_pkce(client, oidc_login, settings):
    location = client.get(reverse("oidc_authentication_init"))["Location"]

    assert location.startswith(f"{oidc_login.issuer}/auth?")
    query = parse_qs(urlsplit(location).query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [settings.OIDC_RP_CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43  # base64url of a SHA-256
    assert query["redirect_uri"] == [f"{SERVER}/oidc/callback/"]


def test_a_first_sign_in_creates_the_user_with_the_roles_and_teams_of_their_groups(
    client, oidc_login
):
    oidc_login.set_account("grace", groups=["cratos-approvers", "team-payments"])

    response = sign_in(client, "grace")

    assert response.status_code == 302
    grace = User.objects.get(username="grace")
    assert (grace.email, grace.first_name) == ("grace@cratos.test", "Grace")
    assert not grace.has_usable_password()
    assert access("grace") == ({"Approvers"}, {"payments"})
    assert grace.is_staff
    # Signed in, and an approver lands on the approvals queue.
    assert client.get(response["Location"]).url == reverse("tickets:approvals")


def test_the_page_asked_for_comes_first(client, oidc_login):
    oidc_login.set_account("heidi", groups=["cratos-auditors"])

    response = sign_in(client, "heidi", next="/audit/")

    assert response.url == "/audit/"
    assert client.get(response.url).status_code == 200


def test_a_removed_group_takes_effect_at_the_next_sign_in(client, oidc_login):
    oidc_login.set_account("ivan", groups=["cratos-approvers", "team-shop"])
    sign_in(client, "ivan")
    assert access("ivan") == ({"Approvers"}, {"shop"})
    client.post(reverse("logout"))

    oidc_login.set_account("ivan", groups=["cratos-requesters"])
    assert sign_in(client, "ivan").status_code == 302

    assert access("ivan") == ({"Requesters"}, set())
    assert not User.objects.get(username="ivan").is_staff


def test_a_wrong_password_stays_at_the_provider(client, oidc_login):
    oidc_login.set_account("judy", groups=["cratos-requesters"])

    page = sign_in(client, "judy", password="wrong")

    assert "Invalid username or password." in page.text
    assert not User.objects.filter(username="judy").exists()


def test_signing_out_ends_the_session_at_the_provider_too(client, oidc_login, settings):
    oidc_login.set_account("ken", groups=["cratos-requesters"])
    sign_in(client, "ken")

    response = client.post(reverse("logout"))

    assert response.url.startswith(f"{oidc_login.issuer}/session/end?")
    query = parse_qs(urlsplit(response.url).query)
    assert query["post_logout_redirect_uri"] == [f"{SERVER}/accounts/login/"]
    assert query["client_id"] == [settings.OIDC_RP_CLIENT_ID]
    assert query["id_token_hint"]
    assert client.get(reverse("tickets:list")).status_code == 302  # signed out here
    # The provider accepts the request: it asks whether to sign out there too.
    assert requests.get(response.url, timeout=5).status_code == 200


def test_signing_out_after_a_password_sign_in_goes_to_the_login_page(client, oidc_login):
    user = User.objects.create_user("root", password="pw-for-tests-123")
    client.force_login(user, backend="cratos.identity.backends.LocalPasswordBackend")

    assert client.post(reverse("logout")).url == f"{SERVER}/accounts/login/"


def test_the_admins_login_page_offers_the_provider_too(client, oidc_login):
    page = client.get(reverse("admin:login"), {"next": "/admin/"}).content.decode()

    assert 'href="/oidc/authenticate/?next=/admin/"' in page
    assert "Sign in with Test IdP" in page
    assert 'name="password"' in page  # and still the password form


def test_a_refusal_at_the_provider_returns_to_the_login_page_with_a_message(client, oidc_login):
    response = client.get(
        reverse("oidc_authentication_callback"), {"error": "access_denied", "state": "x"}
    )

    assert response.url == reverse("login")
    assert "Signing in with Test IdP failed." in client.get(response.url).content.decode()


def test_a_deactivated_person_is_not_signed_in(client, oidc_login):
    oidc_login.set_account("leo", groups=["cratos-requesters"])
    User.objects.create_user("leo", is_active=False)

    response = sign_in(client, "leo")

    assert response.url == reverse("login")
    assert client.get(reverse("tickets:list")).status_code == 302
