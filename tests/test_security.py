"""Web hardening: settings behind DJANGO_SECURE, CSRF on every form, login rate limiting, and no
cluster credential on any page."""

import re
import runpy
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.checks import Tags, run_checks
from django.db import connection
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from cratos.security import client_ip
from redeploy.models import KubernetesCluster
from tests.factories import (
    BindingFactory,
    RedeployOperationFactory,
    TicketFactory,
    UserFactory,
)
from tests.support import redis_down

SETTINGS_FILE = Path(settings.BASE_DIR) / "cratos" / "settings.py"
SECURITY_ENV = [
    "DJANGO_SECURE",
    "SESSION_COOKIE_AGE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "CONTENT_SECURITY_POLICY",
]
# The settings the hardening block decides, applied to the running test settings.
HARDENING_PREFIXES = ("SECURE_", "SESSION_COOKIE_", "CSRF_COOKIE_", "X_FRAME_OPTIONS")
PASSWORD = "pw-for-tests-123"  # UserFactory's
INVALID_LOGIN = "Please enter a correct username and password"
TOO_MANY = "Too many failed sign-in attempts"


def load_settings(monkeypatch, **environ) -> dict:
    """cratos/settings.py evaluated afresh with this environment."""
    for name in SECURITY_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def hardening(loaded: dict) -> dict:
    values = {name: value for name, value in loaded.items() if name.startswith(HARDENING_PREFIXES)}
    values["CONTENT_SECURITY_POLICY"] = loaded["CONTENT_SECURITY_POLICY"]
    values["MIDDLEWARE"] = loaded["MIDDLEWARE"]
    return values


def _patterns(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern.callback


def _parameterless_get_routes():
    for route, _callback in _patterns(get_resolver()):
        path = "/" + route.replace("^", "").replace("$", "")
        if not re.search(r"[<>(\[\\?*+]", path):
            yield path


@pytest.fixture
def secure(monkeypatch):
    """The running settings as DJANGO_SECURE=true behind a proxy makes them."""
    loaded = load_settings(
        monkeypatch, DJANGO_SECURE="true", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"
    )
    with override_settings(**hardening(loaded)):
        yield loaded


# -- settings -------------------------------------------------------------------------------


def test_without_django_secure_the_demo_runs_on_plain_http(monkeypatch):
    loaded = load_settings(monkeypatch)

    assert loaded["DJANGO_SECURE"] is False
    assert loaded["SECURE_SSL_REDIRECT"] is False
    assert loaded["SESSION_COOKIE_SECURE"] is False
    assert loaded["CSRF_COOKIE_SECURE"] is False
    assert loaded["SECURE_HSTS_SECONDS"] == 0
    assert "SECURE_PROXY_SSL_HEADER" not in loaded
    # What holds in every mode.
    assert loaded["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert loaded["SECURE_REFERRER_POLICY"] == "same-origin"
    assert loaded["X_FRAME_OPTIONS"] == "DENY"
    assert loaded["SESSION_COOKIE_HTTPONLY"] is True
    assert loaded["CSRF_COOKIE_HTTPONLY"] is True
    assert "cratos.security.ContentSecurityPolicyMiddleware" in loaded["MIDDLEWARE"]
    assert "default-src 'self'" in loaded["CONTENT_SECURITY_POLICY"]
    assert loaded["SESSION_COOKIE_AGE"] == 8 * 3600


def test_the_session_lifetime_and_the_policy_come_from_the_environment(monkeypatch):
    loaded = load_settings(monkeypatch, SESSION_COOKIE_AGE="600", CONTENT_SECURITY_POLICY="")

    assert loaded["SESSION_COOKIE_AGE"] == 600
    assert loaded["CONTENT_SECURITY_POLICY"] == ""


def test_django_secure_turns_on_https_only_settings(monkeypatch):
    loaded = load_settings(monkeypatch, DJANGO_SECURE="true")

    assert loaded["SECURE_SSL_REDIRECT"] is True
    assert loaded["SECURE_REDIRECT_EXEMPT"] == [r"^healthz$", r"^readyz$"]
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["CSRF_COOKIE_SECURE"] is True
    assert loaded["LANGUAGE_COOKIE_SECURE"] is True
    assert loaded["SECURE_HSTS_SECONDS"] == 31536000
    assert loaded["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert loaded["SECURE_HSTS_PRELOAD"] is False
    assert "SECURE_PROXY_SSL_HEADER" not in loaded  # trusting a proxy header is a separate choice
    policy = loaded["CONTENT_SECURITY_POLICY"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy


def test_django_secure_knobs_come_from_the_environment(monkeypatch):
    loaded = load_settings(
        monkeypatch,
        DJANGO_SECURE="true",
        SECURE_HSTS_SECONDS="600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        SECURE_HSTS_PRELOAD="true",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        SECURE_SSL_REDIRECT="false",
        CONTENT_SECURITY_POLICY="default-src 'none'",
    )

    assert loaded["SECURE_HSTS_SECONDS"] == 600
    assert loaded["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert loaded["SECURE_HSTS_PRELOAD"] is True
    assert loaded["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert loaded["SECURE_SSL_REDIRECT"] is False
    assert loaded["CONTENT_SECURITY_POLICY"] == "default-src 'none'"


def test_django_secure_passes_the_deployment_checks(monkeypatch):
    loaded = load_settings(
        monkeypatch,
        DJANGO_SECURE="true",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        SECURE_HSTS_PRELOAD="true",
    )
    with override_settings(
        **hardening(loaded),
        DEBUG=False,
        SECRET_KEY="k3y-" + "x9Qz!" * 12,
        ALLOWED_HOSTS=["cratos.example.com"],
    ):
        messages = run_checks(include_deployment_checks=True, tags=[Tags.security])

    assert [message.id for message in messages] == []


# -- headers and cookies on real responses --------------------------------------------------


@pytest.mark.django_db
def test_secure_responses_carry_the_headers_and_secure_cookies(secure, client):
    response = client.get(reverse("login"), secure=True)

    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Content-Security-Policy"] == secure["CONTENT_SECURITY_POLICY"]
    csrf_cookie = response.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf_cookie["secure"] and csrf_cookie["httponly"]

    UserFactory(username="alice")
    response = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD}, secure=True
    )

    assert response.status_code == 302
    session_cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session_cookie["secure"] and session_cookie["httponly"]


@pytest.mark.django_db
def test_plain_http_is_redirected_except_the_probes(secure, client):
    response = client.get(reverse("login"))
    assert response.status_code == 301
    assert response.url.startswith("https://")

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_the_proxy_header_marks_a_request_as_https(secure, client):
    response = client.get(reverse("login"), HTTP_X_FORWARDED_PROTO="https")

    assert response.status_code == 200


@pytest.mark.django_db
@override_settings(OIDC_OP_LOGOUT_ENDPOINT="https://idp.example.com:8443/logout?x=1")
def test_with_company_sign_in_its_logout_is_a_form_target_too(client):
    policy = client.get(reverse("login"))["Content-Security-Policy"]

    assert "form-action 'self' https://idp.example.com:8443;" in policy
    assert policy.count("idp.example.com") == 1


@pytest.mark.django_db
def test_without_django_secure_the_csp_but_no_redirect(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    assert "Strict-Transport-Security" not in response
    assert response["X-Frame-Options"] == "DENY"


# What the policy (no 'unsafe-inline') would block in a page.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)


@pytest.mark.django_db
def test_pages_need_no_inline_script_or_style():
    """The CSP has no 'unsafe-inline': the product's own pages must not need it."""
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    ticket = TicketFactory(applicant=superuser)
    operation = RedeployOperationFactory(requested_by=superuser)
    client = Client(raise_request_exception=False)
    pages = [
        reverse("login"),
        f"/tickets/{ticket.ticket_no}/",
        reverse("redeploy:operation", args=[operation.pk]),
        *(
            path
            for path in _parameterless_get_routes()
            if not path.startswith(("/admin/", "/api/"))
        ),
    ]
    client.force_login(superuser)
    checked = 0
    for path in pages:
        response = client.get(path)
        if response.status_code != 200 or "text/html" not in response["Content-Type"]:
            continue
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), path
        assert not INLINE_HANDLER.search(html), path
        assert not INLINE_STYLE.search(html), path
        checked += 1
    assert checked >= 8


@pytest.mark.django_db
def test_admin_pages_need_no_inline_script(client):
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    BindingFactory()
    client.force_login(superuser)
    for model in admin.site._registry:
        opts = model._meta
        for name in ("changelist", "add"):
            response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}"))
            if response.status_code == 403:  # read-only models have no add page
                continue
            html = response.content.decode()
            assert not INLINE_SCRIPT.search(html), (opts.label, name)
            assert not INLINE_HANDLER.search(html), (opts.label, name)


# -- CSRF -----------------------------------------------------------------------------------


def test_no_page_is_exempt_from_csrf():
    """DRF marks its views exempt and enforces CSRF itself for session-authenticated calls
    (test_api_enforces_csrf_for_session_callers); everything else goes through the middleware."""
    exempt = [
        route
        for route, callback in _patterns(get_resolver())
        if getattr(callback, "csrf_exempt", False) and not route.startswith("api/")
    ]

    assert exempt == []


@pytest.mark.django_db
def test_login_form_requires_the_csrf_token():
    UserFactory(username="alice")
    client = Client(enforce_csrf_checks=True)

    refused = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert refused.status_code == 403

    token = client.get(reverse("login")).context["csrf_token"]
    accepted = client.post(
        reverse("login"),
        {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": str(token)},
    )
    assert accepted.status_code == 302


@pytest.mark.django_db
def test_every_form_requires_the_csrf_token():
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    ticket = TicketFactory(applicant=superuser)
    cluster = BindingFactory().cluster
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    posts = {
        reverse("tickets:create"): {"reason": "x"},
        reverse("tickets:submit", args=[ticket.ticket_no]): {},
        reverse("tickets:cancel", args=[ticket.ticket_no]): {},
        reverse("tickets:entries-add", args=[ticket.ticket_no]): {},
        reverse("tickets:entry-remove", args=[ticket.ticket_no]): {},
        reverse("logout"): {},
        reverse("set_language"): {"language": "en"},
        reverse("admin:tickets_ticket_changelist"): {"action": "delete_selected"},
        reverse("admin:redeploy_kubernetescluster_change", args=[cluster.pk]): {"name": "x"},
        reverse("admin:logout"): {},
    }
    for path, data in posts.items():
        assert client.post(path, data).status_code == 403, path


@pytest.mark.django_db
def test_api_enforces_csrf_for_session_callers():
    user = UserFactory(username="alice")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.post(
        "/api/v1/tickets/",
        {"workOrderKey": "APPLICATION_REDEPLOY", "applications": ["x"], "reason": "x"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert "CSRF" in response.json()["message"]


# -- login rate limiting --------------------------------------------------------------------


def _sign_in(client, username, password, path=None, **extra):
    return client.post(
        path or reverse("login"), {"username": username, "password": password}, **extra
    )


@pytest.mark.django_db
def test_sixth_failed_attempt_is_refused_with_429(client):
    UserFactory(username="alice")
    for _ in range(5):
        response = _sign_in(client, "alice", "wrong")
        assert response.status_code == 200
        assert INVALID_LOGIN in response.content.decode()

    # Refused before the password is even checked: the right one does not help now.
    response = _sign_in(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert TOO_MANY in response.content.decode()
    assert "Try again in 15 min." in response.content.decode()
    assert 0 < int(response["Retry-After"]) <= 900
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_successful_sign_in_resets_the_count(client):
    UserFactory(username="alice")
    for _ in range(4):
        _sign_in(client, "alice", "wrong")
    assert _sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()

    for _ in range(4):
        assert _sign_in(client, "alice", "wrong").status_code == 200

    assert _sign_in(client, "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_lock_holds_one_user_name_from_one_address():
    UserFactory(username="alice")
    UserFactory(username="bob")
    attacker = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(5):
        _sign_in(attacker, "alice", "wrong")
    assert _sign_in(attacker, "alice", PASSWORD).status_code == 429
    assert _sign_in(attacker, "ALICE", "wrong").status_code == 429  # same name, other case

    # Another user behind the same address, and alice from her own desk, sign in.
    assert _sign_in(Client(REMOTE_ADDR="10.0.0.1"), "bob", PASSWORD).status_code == 302
    assert _sign_in(Client(REMOTE_ADDR="10.0.0.2"), "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_lock_lives_in_redis_for_the_window(client, redis_client):
    UserFactory(username="alice")
    for _ in range(5):
        _sign_in(client, "alice", "wrong")

    locks = redis_client.keys("*cratos:login:locked:*")
    assert len(locks) == 1
    assert 0 < redis_client.ttl(locks[0]) <= 900
    assert b"alice" not in locks[0]  # user names are hashed into the key


@pytest.mark.django_db
@override_settings(LOGIN_FAILURE_LIMIT=2, LOGIN_FAILURE_WINDOW=60)
def test_limit_and_window_are_settings(client):
    UserFactory(username="alice")
    _sign_in(client, "alice", "wrong")
    _sign_in(client, "alice", "wrong")

    response = _sign_in(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert "Try again in 1 min." in response.content.decode()


@pytest.mark.django_db
def test_the_admin_login_is_throttled_too(client):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    admin_login = reverse("admin:login")
    for _ in range(5):
        response = _sign_in(client, "root", "wrong", admin_login)
        assert response.status_code == 200
        assert "correct username and password for a staff account" in response.content.decode()

    response = _sign_in(client, "root", PASSWORD, admin_login)

    assert response.status_code == 429
    assert TOO_MANY in response.content.decode()
    # One count for both doors.
    assert _sign_in(client, "root", PASSWORD).status_code == 429


@pytest.mark.django_db
def test_a_non_staff_user_with_the_right_password_is_not_counted_at_the_admin(client):
    UserFactory(username="alice")
    for _ in range(6):
        response = _sign_in(client, "alice", PASSWORD, reverse("admin:login"))
        assert response.status_code == 200

    assert _sign_in(client, "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_sign_in_still_works_when_redis_is_down(client):
    UserFactory(username="alice")
    with redis_down():
        assert _sign_in(client, "alice", PASSWORD).status_code == 302


def _request(remote_addr: str, forwarded_for: str | None = None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/", **extra)


def test_client_ip_ignores_forwarded_for_unless_proxies_are_trusted():
    request = _request("10.0.0.9", "203.0.113.5")

    assert client_ip(request) == "10.0.0.9"


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_client_ip_behind_one_proxy_takes_what_the_proxy_saw():
    # The client forged the first entry; the ingress appended the address it really saw.
    assert client_ip(_request("10.0.0.9", "1.2.3.4, 203.0.113.5")) == "203.0.113.5"
    assert client_ip(_request("10.0.0.9")) == "10.0.0.9"


@override_settings(TRUSTED_PROXY_COUNT=2)
def test_client_ip_behind_two_proxies():
    assert client_ip(_request("10.0.0.9", "1.2.3.4, 203.0.113.5, 10.0.0.8")) == "203.0.113.5"


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_client_ip_is_always_an_address():
    assert client_ip(_request("10.0.0.9", "203.0.113.5:4711")) == "10.0.0.9"
    assert client_ip(_request("10.0.0.9", "<script>")) == "10.0.0.9"
    assert client_ip(_request("10.0.0.9", "2001:db8::1")) == "2001:db8::1"


@pytest.mark.django_db
@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_the_ingress_each_client_has_its_own_count():
    UserFactory(username="alice")
    ingress = "10.0.0.9"
    attacker = Client(REMOTE_ADDR=ingress, HTTP_X_FORWARDED_FOR="203.0.113.5")
    for _ in range(5):
        _sign_in(attacker, "alice", "wrong")
    assert _sign_in(attacker, "alice", PASSWORD).status_code == 429

    alice = Client(REMOTE_ADDR=ingress, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert _sign_in(alice, "alice", PASSWORD).status_code == 302


# -- cluster credentials are never rendered -------------------------------------------------

SECRETS = {
    "token": "tok-5c1e7a-never-shown",
    "client_cert_data": "-----BEGIN CERTIFICATE-----\ncert-9b2d44-never-shown\n"
    "-----END CERTIFICATE-----\n",
    "client_key_data": "-----BEGIN PRIVATE KEY-----\nkey-0f7a31-never-shown\n"
    "-----END PRIVATE KEY-----\n",
    "kubeconfig": "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n"
    "    token: kubeconfig-token-77e0c2-never-shown\n",
}
# A distinctive piece of each, as it would show in HTML (escaped or not).
MARKERS = [
    "tok-5c1e7a",
    "cert-9b2d44",
    "key-0f7a31",
    "kubeconfig-token-77e0c2",
    "BEGIN PRIVATE KEY",
    "BEGIN CERTIFICATE",
]


def _assert_no_credentials(response, where):
    content = response.content.decode(errors="replace")
    for marker in MARKERS:
        assert marker not in content, f"{marker} rendered on {where}"


@pytest.mark.django_db
def test_no_cluster_credential_appears_on_any_page():
    cluster = KubernetesCluster.objects.create(
        name="prod", server="https://k8s.example.com:6443", **SECRETS
    )
    binding = BindingFactory(cluster=cluster, namespace="shop")
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    TicketFactory(applicant=superuser, applications=[binding.application])
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    change = reverse("admin:redeploy_kubernetescluster_change", args=[cluster.pk])
    pages = {
        "/",
        "/tickets/",
        "/authorizations/",
        "/admin/redeploy/kubernetescluster/",
        change,
        reverse("admin:redeploy_kubernetescluster_history", args=[cluster.pk]),
        reverse("admin:redeploy_kubernetescluster_delete", args=[cluster.pk]),
        reverse("admin:redeploy_deploymentbinding_change", args=[binding.pk]),
        reverse("admin:redeploy_application_change", args=[binding.application.pk]),
        "/admin/autocomplete/?app_label=redeploy&model_name=deploymentbinding"
        "&field_name=cluster&term=pro",
        *_parameterless_get_routes(),
        *(
            reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            for model in admin.site._registry
        ),
    }
    for path in sorted(pages):
        _assert_no_credentials(client.get(path), path)

    # Neither a change that stores a new token (nor its history entry) ...
    response = client.post(
        change,
        {"name": "prod", "server": "https://k8s.example.com:6443", "token": "tok-5c1e7a-new"},
        follow=True,
    )
    assert response.status_code == 200
    _assert_no_credentials(response, "after saving")
    cluster.refresh_from_db()
    assert cluster.token == "tok-5c1e7a-new"
    _assert_no_credentials(client.get(change), change)
    history = reverse("admin:redeploy_kubernetescluster_history", args=[cluster.pk])
    _assert_no_credentials(client.get(history), history)

    # ... nor a refused form echoes what was typed.
    response = client.post(
        change,
        {
            "name": "prod",
            "server": "https://k8s.example.com:6443",
            "token": "tok-5c1e7a-typed",
            "client_key_data": SECRETS["client_key_data"],
            "forget_credentials": ["token", "client_key_data"],
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    _assert_no_credentials(response, "the refused form")


@pytest.mark.django_db
def test_cluster_credentials_are_encrypted_in_the_database():
    cluster = KubernetesCluster.objects.create(name="prod", server="https://k8s:6443", **SECRETS)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT token, client_cert_data, client_key_data, kubeconfig "
            "FROM redeploy_kubernetescluster WHERE id = %s",
            [cluster.pk],
        )
        stored = " ".join(cursor.fetchone())

    for marker in MARKERS:
        assert marker not in stored
