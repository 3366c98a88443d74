"""Fernet-encrypted text for secrets at rest (cluster credentials)."""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@cache
def _fernet(key: str) -> Fernet:
    # Any string works as FIELD_ENCRYPTION_KEY; it is stretched to the 32 bytes Fernet wants.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code only ever sees the plain text."""

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            return _fernet(settings.FIELD_ENCRYPTION_KEY).decrypt(value.encode()).decode()
        except InvalidToken as exc:
            # Never hand ciphertext on as if it were a credential.
            raise ImproperlyConfigured(
                "Cannot decrypt a stored credential: FIELD_ENCRYPTION_KEY changed?"
            ) from exc

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return _fernet(settings.FIELD_ENCRYPTION_KEY).encrypt(value.encode()).decode()
