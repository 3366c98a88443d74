"""API plumbing shared by the apps: one JSON shape for every refusal, strict input parsing."""

from collections.abc import Mapping

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from cratos.exceptions import DomainError

# Django's form CSRF field may accompany a form-encoded body; it is not an unknown field.
_IGNORED_INPUT_FIELDS = {"csrfmiddlewaretoken"}


def error_body(*, code: str, message: str, **extra) -> dict:
    return {"error": code, "message": message, **extra}


def _field_errors(detail, path: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested validation detail to {"applications[2]": ["..."], ...}."""
    if isinstance(detail, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                child = path
            elif isinstance(key, int):
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}" if path else str(key)
            for name, messages in _field_errors(value, child).items():
                flat.setdefault(name, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, Mapping | list) for item in detail):
            return {path: [str(item) for item in detail]} if detail else {}
        flat = {}
        for index, item in enumerate(detail):
            for name, messages in _field_errors(item, f"{path}[{index}]").items():
                flat.setdefault(name, []).extend(messages)
        return flat
    return {path: [str(detail)]}


def _detailed_body(*, code: str, detail) -> dict:
    fields = _field_errors(detail)
    message = "; ".join(
        f"{name}: {' '.join(messages)}" if name else " ".join(messages)
        for name, messages in fields.items()
    )
    named = {name: messages for name, messages in fields.items() if name}
    body = error_body(code=code, message=message or "The request is not valid.")
    if named:
        body["fields"] = named
    return body


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every refusal becomes `{"error": code, "message": ...}`.

    Domain refusals keep their exact text (scripts match on it); anything else unexpected
    returns None so DRF re-raises it as the server error it is.
    """
    if isinstance(exc, DomainError):
        set_rollback()
        return Response(error_body(code=exc.code, message=exc.message), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    set_rollback()
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc.detail, str):
        body = error_body(code=str(exc.get_codes()), message=str(exc.detail))
    else:
        # Serializer errors (and any other structured detail): a readable line plus per field.
        body = _detailed_body(code=exc.default_code, detail=exc.detail)
    return Response(body, status=exc.status_code, headers=headers)


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers, booleans and objects instead of turning them to text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class InputSerializer(serializers.Serializer):
    """Parses a request body's shape only; refuses fields it does not know.

    Input serializers never carry business rules: those live in the services.
    """

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields) - _IGNORED_INPUT_FIELDS)
            if unknown:
                raise exceptions.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)
