"""Refusals of the Kubernetes side: the manual's messages, as members of the one DomainError
family. ("Unauthorized access", a missing grant, is tickets.grants.UnauthorizedAccess.)"""

from cratos.exceptions import DomainError, NotFound

DEPLOYMENT_DOES_NOT_EXIST = "Deployment does not exist"


def binding_missing_message(deployment_name: str) -> str:
    return f"The deployment={deployment_name} resource does not exist"


def operation_failed_message(error: str) -> str:
    return f"Operation failed err: {error}"


class KubeError(DomainError):
    """The Kubernetes API refused or failed a call; the message carries the API's own words."""

    status_code = 502
    code = "kubernetes_error"
    default_message = "The Kubernetes API refused the request."


class KubeTransientError(KubeError):
    """The API could not be reached or asked to come back later (network, timeout, 5xx, 429).

    `in_doubt`: the request may have reached the API and been applied (no answer came back,
    or a gateway's 502/503/504 came instead).
    `retry_after`: seconds the API asked the client to wait (429 Retry-After).
    """

    status_code = 503
    code = "kubernetes_unavailable"
    default_message = "The Kubernetes API is not answering."

    def __init__(
        self, message: str | None = None, *, in_doubt: bool = False, retry_after: float = 0.0
    ):
        super().__init__(message)
        self.in_doubt = in_doubt
        self.retry_after = retry_after


class RestartInDoubt(KubeTransientError):
    """A restart PATCH failed in a way that does not tell whether the API applied it."""

    code = "restart_in_doubt"


class DeploymentNotFound(KubeError, NotFound):
    status_code = 404
    code = "deployment_not_found"
    default_message = DEPLOYMENT_DOES_NOT_EXIST
