"""Web hardening that settings alone cannot express: login rate limiting and the CSP header.

Sign-in attempts are counted in the cache (Redis in production, so every web process shares
the counts; the in-process cache in the demo) before any password is checked: per user name
and client address (LOGIN_FAILURE_LIMIT), per user name (LOGIN_ACCOUNT_LIMIT) and per address
(LOGIN_ADDRESS_LIMIT), within LOGIN_FAILURE_WINDOW seconds. The attempt that reaches a limit is
still checked; from then on, for a whole window, sign-in in that scope is refused with HTTP 429
unchecked, and the lockout is audited. A successful sign-in starts the user name's counts again.
"""

import contextlib
import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from cratos.audit.recorder import Action, Outcome, record_event

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
#
# Every attempt is counted BEFORE its password is checked, with the cache's atomic increment:
# of a burst of parallel attempts each gets its own number, so at most the limit of them reach
# the (slow) password check, however many arrive at once. Three counts, each with its limit:
# the user name from this address, the user name from anywhere (guesses spread over many
# addresses) and this address for any user name (one address trying many names).


@dataclass(frozen=True)
class Scope:
    name: str
    limit_setting: str
    default_limit: int

    def key(self, kind: str, *, username: str, ip: str) -> str:
        parts = {"pair": (username.casefold(), ip), "account": (username.casefold(),)}
        # Hashed: user names are free text, and cache keys must stay short and printable.
        digest = hashlib.sha256("\0".join(parts.get(self.name, (ip,))).encode()).hexdigest()
        return f"cratos:login:{kind}:{self.name}:{digest}"

    @property
    def limit(self) -> int:
        return _setting(self.limit_setting, self.default_limit)


PAIR = Scope("pair", "LOGIN_FAILURE_LIMIT", 5)
SCOPES = (
    PAIR,
    Scope("account", "LOGIN_ACCOUNT_LIMIT", 20),
    Scope("address", "LOGIN_ADDRESS_LIMIT", 50),
)


def _window() -> int:
    return _setting("LOGIN_FAILURE_WINDOW", 15 * 60)


def _count(key: str, window: int) -> int:
    # The first attempt opens the window; INCR keeps the key's expiry, so it does not slide.
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # the window closed between add and incr: this attempt opens a new one
        cache.add(key, 1, timeout=window)
        return 1


def seconds_locked(*, username: str, ip: str) -> int:
    """How long sign-in stays refused for this user name from this address; 0: not refused."""
    untils = cache.get_many([scope.key("locked", username=username, ip=ip) for scope in SCOPES])
    return max((math.ceil(until - time.time()) for until in untils.values()), default=0)


@dataclass(frozen=True)
class Attempt:
    """A sign-in attempt, counted: refused for `retry_after` seconds (0: its password may be
    checked); the scopes it locked, being the attempt that reached their limit."""

    retry_after: int
    locked: tuple[Scope, ...] = ()


def count_attempt(*, username: str, ip: str) -> Attempt:
    locked_for = seconds_locked(username=username, ip=ip)
    if locked_for:
        return Attempt(retry_after=locked_for)
    window = _window()
    locked = []
    for scope in SCOPES:
        attempts = _count(scope.key("attempts", username=username, ip=ip), window)
        if attempts > scope.limit:
            # Refused here: the wider scopes do not count an attempt that was never checked.
            return Attempt(retry_after=window, locked=tuple(locked))
        if attempts == scope.limit:
            # Locked for a whole window from now on; this attempt itself is still checked.
            until = time.time() + window
            cache.set(scope.key("locked", username=username, ip=ip), until, timeout=window)
            locked.append(scope)
    return Attempt(retry_after=0, locked=tuple(locked))


def signed_in(*, username: str, ip: str) -> None:
    """A right password: this user name's counts start again, and the attempt does not count
    against the address (colleagues behind one NAT sign in all day)."""
    cache.delete_many(
        [
            scope.key(kind, username=username, ip=ip)
            for scope in SCOPES[:2]
            for kind in ("attempts", "locked")
        ]
    )
    with contextlib.suppress(ValueError):  # its window closed meanwhile
        cache.decr(SCOPES[2].key("attempts", username=username, ip=ip))


def _audit_lockout(*, username: str, ip: str, scopes: tuple[Scope, ...]) -> None:
    minutes = math.ceil(_window() / 60)
    with transaction.atomic():
        record_event(
            action=Action.LOGIN_LOCKED,
            outcome=Outcome.FAILURE,
            message=f"Sign-in refused for {minutes} min after "
            + ", ".join(f"{scope.limit} attempts per {scope.name}" for scope in scopes),
            actor_username=username[:150],
            request_ip=ip or None,
        )


class LoginThrottleMixin:
    """For authentication forms: counts the attempt, refuses it unchecked when over a limit,
    and starts the user name's counts again on success.

    If the cache does not answer, sign-in goes on unthrottled (and says so in the log): the
    password check still stands, and nobody is locked out of the admin by a Redis outage.
    """

    retry_after = 0  # seconds sign-in stays refused, when it is

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request)
        try:
            attempt = count_attempt(username=username, ip=ip)
        except (redis.ConnectionError, redis.TimeoutError):
            logger.error("Login throttling is unavailable: the cache does not answer.")
            return super().clean()
        self.retry_after = attempt.retry_after
        if attempt.locked:
            _audit_lockout(username=username, ip=ip, scopes=attempt.locked)
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
            if self.user_cache is not None:
                signed_in(username=username, ip=ip)
            raise
        signed_in(username=username, ip=ip)
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


def _policy() -> str:
    """settings.CONTENT_SECURITY_POLICY; with company sign-in, its logout (a form posted here,
    answered with a redirect to the provider) is a form target too: browsers hold redirects
    after a form post to form-action."""
    policy = _setting("CONTENT_SECURITY_POLICY", "")
    parts = urlsplit(_setting("OIDC_OP_LOGOUT_ENDPOINT", ""))
    if not (policy and parts.scheme and parts.netloc):
        return policy
    provider = f"{parts.scheme}://{parts.netloc}"
    return "; ".join(
        f"{directive} {provider}" if directive.split()[0] == "form-action" else directive
        for directive in (part.strip() for part in policy.split(";"))
        if directive
    )


class ContentSecurityPolicyMiddleware:
    """Sends the policy (when set) on every response that has none."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = _policy()
        if policy:
            response.headers.setdefault("Content-Security-Policy", policy)
        return response
