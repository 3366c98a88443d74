"""API plumbing shared by the apps: one JSON shape for every refusal."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cratos.exceptions import DomainError


def error_body(*, code: str, message: str, **extra) -> dict:
    return {"error": code, "message": message, **extra}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(code=exc.code, message=exc.message), status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is not None:
        detail = response.data
        if isinstance(detail, dict) and set(detail) == {"detail"}:
            message, fields = str(detail["detail"]), None
        else:
            message, fields = "The request is not valid.", detail
        code = getattr(getattr(exc, "default_code", None), "__str__", lambda: "invalid")()
        body = error_body(code=code, message=message)
        if fields is not None:
            body["fields"] = fields
        response.data = body
    return response
