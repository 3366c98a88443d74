"""System checks (run by `manage.py check`, `migrate` and the servers' start): a company login
configured by halves fails at start, not at the first sign-in."""

from django.conf import settings
from django.core import checks

from .backends import LOCAL_PASSWORD_POLICIES

OIDC_ENDPOINTS = (
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
    "OIDC_OP_JWKS_ENDPOINT",
)


@checks.register(checks.Tags.security)
def local_password_policy(app_configs, **kwargs):
    if settings.LOCAL_PASSWORDS in LOCAL_PASSWORD_POLICIES:
        return []
    return [
        checks.Error(
            f"LOCAL_PASSWORDS is {settings.LOCAL_PASSWORDS!r}; "
            f"it must be one of {', '.join(LOCAL_PASSWORD_POLICIES)}.",
            id="identity.E001",
        )
    ]


@checks.register(checks.Tags.security)
def company_login_settings(app_configs, **kwargs):
    errors = []
    if settings.OIDC_RP_CLIENT_ID:
        missing = [name for name in OIDC_ENDPOINTS if not getattr(settings, name)]
        if missing:
            errors.append(
                checks.Error(
                    f"OIDC_RP_CLIENT_ID is set but {', '.join(missing)} is not.",
                    hint="Copy them from the provider's /.well-known/openid-configuration.",
                    id="identity.E002",
                )
            )
    if settings.LDAP_SERVER_URI and not settings.AUTH_LDAP_USER_SEARCH.base_dn:
        errors.append(
            checks.Error(
                "LDAP_SERVER_URI is set but LDAP_USER_SEARCH_BASE is not.", id="identity.E003"
            )
        )
    return errors
