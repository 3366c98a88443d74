"""Fernet-encrypted text for secrets at rest (cluster credentials).

settings.FIELD_ENCRYPTION_KEY encrypts; it and the FIELD_ENCRYPTION_OLD_KEYS decrypt, so that
the key can be rotated: add the new key, keep the old one among the old keys, re-encrypt what is
stored (`manage.py reencrypt_credentials`), then drop the old key.
"""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction


def _fernet(key: str) -> Fernet:
    # Any string works as a key; it is stretched to the 32 bytes Fernet wants.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


@cache
def _keyring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(key) for key in keys])


def keyring() -> MultiFernet:
    """The first key encrypts, every one decrypts."""
    if not settings.FIELD_ENCRYPTION_KEY:
        raise ImproperlyConfigured("Set FIELD_ENCRYPTION_KEY to read or store credentials.")
    return _keyring((settings.FIELD_ENCRYPTION_KEY, *settings.FIELD_ENCRYPTION_OLD_KEYS))


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code only ever sees the plain text."""

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            return keyring().decrypt(value.encode()).decode()
        except InvalidToken as exc:
            # Never hand ciphertext on as if it were a credential.
            raise ImproperlyConfigured(
                "Cannot decrypt a stored credential: FIELD_ENCRYPTION_KEY changed without the "
                "old key among FIELD_ENCRYPTION_OLD_KEYS?"
            ) from exc

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return keyring().encrypt(value.encode()).decode()


def reencrypt_stored() -> dict[str, int]:
    """Encrypt every stored secret again with FIELD_ENCRYPTION_KEY (read with any key): the
    rows rewritten per model label. Row by row, each under its lock, so a change saved meanwhile
    is neither lost nor left on an old key."""
    rewritten = {}
    for model in apps.get_models():
        names = [
            field.name for field in model._meta.fields if isinstance(field, EncryptedTextField)
        ]
        if not names:
            continue
        count = 0
        for pk in model._default_manager.values_list("pk", flat=True):
            with transaction.atomic():
                row = model._default_manager.select_for_update().only("pk", *names).get(pk=pk)
                model._default_manager.filter(pk=pk).update(
                    **{name: getattr(row, name) for name in names}
                )
            count += 1
        rewritten[model._meta.label] = count
    return rewritten
