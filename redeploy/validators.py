"""Kubernetes object-name rules (DNS-1123), checked before anything reaches a cluster."""

import re

from django.core.exceptions import ValidationError

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_dns1123_label(value: str) -> None:
    """Namespaces: at most 63 lowercase alphanumerics or '-', starting and ending alphanumeric."""
    if len(value) > 63 or not _LABEL.match(value):
        raise ValidationError(
            "%(value)s is not a valid DNS-1123 label (lowercase letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit).",
            params={"value": value[:80]},
            code="dns1123_label",
        )


def validate_dns1123_subdomain(value: str) -> None:
    """Deployment names: dot-separated DNS-1123 labels, at most 253 characters."""
    if len(value) > 253 or not all(_LABEL.match(part) for part in value.split(".")):
        raise ValidationError(
            "%(value)s is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and "
            "'.', at most 253 characters, starting and ending with a letter or digit).",
            params={"value": value[:80]},
            code="dns1123_subdomain",
        )
