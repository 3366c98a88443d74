"""What the serving processes (web, worker, beat) check before they start.

Outside DEBUG none starts on the demo's public SECRET_KEY (sessions and signed links could be
forged) or without a FIELD_ENCRYPTION_KEY of its own (the credentials at rest would be as safe
as SECRET_KEY). Management commands are not held back: only what touches stored credentials
needs the key (cratos.fields).
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def refuse_unsafe_keys() -> None:
    if settings.DEBUG:
        return
    if settings.SECRET_KEY == settings.DEMO_SECRET_KEY:
        raise ImproperlyConfigured("Set SECRET_KEY: the demo's key is public (or set DEBUG=true).")
    if not settings.FIELD_ENCRYPTION_KEY or settings.FIELD_ENCRYPTION_KEY == settings.SECRET_KEY:
        raise ImproperlyConfigured(
            "Set FIELD_ENCRYPTION_KEY to a key of its own, not SECRET_KEY (or set DEBUG=true)."
        )
