"""The one family of refusals. Every entry point (pages, admin, API, tasks) renders these alike.

A message may be lazy (gettext_lazy, format_lazy): it is translated when rendered, so the reader's
language applies; the audit log stores it in English (cratos.audit.recorder).
"""

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


class DomainError(Exception):
    status_code = 400
    code = "invalid"
    default_message = _("The request was refused.")

    def __init__(self, message: str | Promise | None = None, *, code: str | None = None):
        self.message = message or self.default_message
        if code:
            self.code = code
        super().__init__(self.message)


class ValidationFailed(DomainError):
    code = "invalid"


class PermissionRefused(DomainError):
    status_code = 403
    code = "forbidden"
    default_message = _("You may not do that.")


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_message = _("Not found.")


class InvalidTransition(DomainError):
    status_code = 409
    code = "invalid_transition"


class ServiceUnavailable(DomainError):
    status_code = 503
    code = "service_unavailable"
    default_message = _("A service the product depends on is not answering; nothing was changed.")
