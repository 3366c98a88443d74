"""The one family of refusals. Every entry point (pages, admin, API, tasks) renders these alike."""


class DomainError(Exception):
    status_code = 400
    code = "invalid"
    default_message = "The request was refused."

    def __init__(self, message: str | None = None, *, code: str | None = None):
        self.message = message or self.default_message
        if code:
            self.code = code
        super().__init__(self.message)


class ValidationFailed(DomainError):
    code = "invalid"


class PermissionRefused(DomainError):
    status_code = 403
    code = "forbidden"
    default_message = "You may not do that."


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class InvalidTransition(DomainError):
    status_code = 409
    code = "invalid_transition"


class ServiceUnavailable(DomainError):
    status_code = 503
    code = "service_unavailable"
    default_message = "A service the product depends on is not answering; nothing was changed."
