from django.conf import settings
from django.core import checks

from .backends import LOCAL_PASSWORD_POLICIES


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
