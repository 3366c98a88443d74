"""Web hardening that settings alone cannot express: login rate limiting and the CSP header.

Failed sign-ins are counted per (user name, client address) in the cache: Redis in production,
so every web process shares the count; the in-process cache in the demo. After
LOGIN_FAILURE_LIMIT failures within LOGIN_FAILURE_WINDOW seconds, sign-in for that pair is
refused with HTTP 429 for the next LOGIN_FAILURE_WINDOW seconds, before any password is checked.
A successful sign-in resets the count. Other users, and the same user elsewhere, are unaffected.
"""

import hashlib
import ipaddress
import logging
import math
import time

import redis
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)

TOO_MANY_ATTEMPTS = "too_many_attempts"
TOO_MANY_ATTEMPTS_MESSAGE = _(
    "Too many failed sign-in attempts for this user name. Try again in %(minutes)d min."
)


def _setting(name: str, default):
    # Optional settings (cratos/settings.py sets them from the environment); these defaults apply.
    return getattr(settings, name, default)


def client_ip(request) -> str:
    """The client's address. Behind TRUSTED_PROXY_COUNT proxies, the address the outermost of
    them saw, taken from the right of X-Forwarded-For: entries further left are the client's
    own claims and could be forged. Falls back to the peer address if that entry is no IP."""
    hops = _setting("TRUSTED_PROXY_COUNT", 0)
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    if hops and len(forwarded) >= hops:
        try:
            return str(ipaddress.ip_address(forwarded[-hops]))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR", "")


# -- the login throttle ---------------------------------------------------------------------


def _key(kind: str, *, username: str, ip: str) -> str:
    # Hashed: user names are free text, and cache keys must stay short and printable.
    digest = hashlib.sha256(f"{username.casefold()}\0{ip}".encode()).hexdigest()
    return f"cratos:login:{kind}:{digest}"


def _limit() -> int:
    return _setting("LOGIN_FAILURE_LIMIT", 5)


def _window() -> int:
    return _setting("LOGIN_FAILURE_WINDOW", 15 * 60)


def seconds_locked(*, username: str, ip: str) -> int:
    """How long sign-in stays refused for this user name from this address; 0: not refused."""
    until = cache.get(_key("locked", username=username, ip=ip))
    return max(0, math.ceil(until - time.time())) if until else 0


def record_failure(*, username: str, ip: str) -> None:
    failures_key = _key("failures", username=username, ip=ip)
    window = _window()
    # The first failure opens the window; INCR keeps the key's expiry, so it does not slide.
    cache.add(failures_key, 0, timeout=window)
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # the window closed between add and incr: this failure opens a new one
        cache.set(failures_key, 1, timeout=window)
        failures = 1
    if failures >= _limit():
        cache.set(_key("locked", username=username, ip=ip), time.time() + window, timeout=window)
        cache.delete(failures_key)


def reset(*, username: str, ip: str) -> None:
    cache.delete_many(
        [_key("failures", username=username, ip=ip), _key("locked", username=username, ip=ip)]
    )


class LoginThrottleMixin:
    """For authentication forms: refuses a locked (user name, address) before authenticating,
    counts failed authentications and resets the count on success.

    If the cache does not answer, sign-in goes on unthrottled (and says so in the log): the
    password check still stands, and nobody is locked out of the admin by a Redis outage.
    """

    retry_after = 0  # seconds sign-in stays refused, when it is

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request)
        try:
            self.retry_after = seconds_locked(username=username, ip=ip)
        except (redis.ConnectionError, redis.TimeoutError):
            logger.error("Login throttling is unavailable: the cache does not answer.")
            return super().clean()
        if self.retry_after:
            raise ValidationError(
                TOO_MANY_ATTEMPTS_MESSAGE,
                code=TOO_MANY_ATTEMPTS,
                params={"minutes": math.ceil(self.retry_after / 60)},
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            # A known user refused for another reason (e.g. not staff) gave the right password.
            if self.user_cache is None:
                record_failure(username=username, ip=ip)
            raise
        reset(username=username, ip=ip)
        return cleaned


class ThrottledAuthenticationForm(LoginThrottleMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(LoginThrottleMixin, AdminAuthenticationForm):
    pass


def _refused_for_attempts(response):
    """A login page refused for too many attempts answers 429 with Retry-After."""
    form = (getattr(response, "context_data", None) or {}).get("form")
    if form is not None and form.has_error(NON_FIELD_ERRORS, TOO_MANY_ATTEMPTS):
        response.status_code = 429
        response["Retry-After"] = str(form.retry_after)
    return response


class LoginView(auth_views.LoginView):
    authentication_form = ThrottledAuthenticationForm

    def form_invalid(self, form):
        return _refused_for_attempts(super().form_invalid(form))


def admin_login(request, extra_context=None):
    """The admin's own login page, throttled alike (admin.site.login_form must be
    ThrottledAdminAuthenticationForm)."""
    return _refused_for_attempts(admin.site.login(request, extra_context))


# -- Content-Security-Policy ----------------------------------------------------------------


class ContentSecurityPolicyMiddleware:
    """Sends settings.CONTENT_SECURITY_POLICY (when set) on every response that has none."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = _setting("CONTENT_SECURITY_POLICY", "")
        if policy:
            response.headers.setdefault("Content-Security-Policy", policy)
        return response
