from django import template
from django.conf import settings

from cratos.identity.oidc import oidc_configured

register = template.Library()


@register.simple_tag
def oidc_provider_name() -> str:
    """The provider's name for "Sign in with …", or "" when OIDC is not configured."""
    return settings.OIDC_PROVIDER_NAME if oidc_configured() else ""
