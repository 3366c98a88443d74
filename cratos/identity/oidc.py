"""OpenID Connect beside mozilla-django-oidc: whether it is configured, and where signing out
sends the browser."""

from urllib.parse import urlencode

from django.conf import settings
from django.shortcuts import resolve_url


def oidc_configured() -> bool:
    return bool(settings.OIDC_RP_CLIENT_ID and settings.OIDC_OP_AUTHORIZATION_ENDPOINT)


def provider_logout_url(request) -> str:
    """After signing out here, the provider's end-session endpoint (RP-initiated logout) ends the
    provider's session too, or its next sign-in would pass without asking; it sends the browser
    back to the login page. People who signed in otherwise go straight to the login page."""
    back = request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL))
    id_token = request.session.get("oidc_id_token")
    if not (settings.OIDC_OP_LOGOUT_ENDPOINT and id_token):
        return back
    query = urlencode(
        {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": back,
            "client_id": settings.OIDC_RP_CLIENT_ID,
        }
    )
    return f"{settings.OIDC_OP_LOGOUT_ENDPOINT}?{query}"
