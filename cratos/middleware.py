"""Refusals as the caller reads them: JSON for the API, the app's error page for everything else.

Django's own 400, 404 and 500 answers go through here too (cratos.urls names the handlers), so
the API never answers with an HTML page, not even when the code fails unforeseen.
"""

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views import defaults

from cratos.api import error_body
from cratos.exceptions import DomainError, NotFound, ValidationFailed
from cratos.validation import NOT_ROWS, NUL, NUL_REFUSED, has_nul

API_PREFIX = "/api/"


def is_api(request) -> bool:
    return request.path_info.startswith(API_PREFIX)


def refusal_response(request, error: DomainError):
    if is_api(request):
        return JsonResponse(
            error_body(code=error.code, message=str(error.message)), status=error.status_code
        )
    return render(request, "error.html", {"error": error}, status=error.status_code)


class DomainErrorMiddleware:
    """Pages render a refusal that escaped a view as the error page, with its status code."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DomainError):
            return refusal_response(request, exception)
        return None


class EdgeInputMiddleware:
    """Refuses NUL characters in the path (404), the query string and form fields (400), and
    an admin action's selected rows that are no keys of its model (400): cratos.validation.

    Placed after the session, authentication and message middleware, so that the error page
    renders as any other page does."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if NUL in request.path_info:
            return refusal_response(request, NotFound(_("Not found.")))
        # request.POST holds the fields of form bodies only; it leaves a JSON body unread.
        if has_nul(request.GET) or (request.method == "POST" and has_nul(request.POST)):
            return refusal_response(request, ValidationFailed(NUL_REFUSED))
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        # The admin marks its views with their ModelAdmin; an action filters by these keys.
        model_admin = getattr(view_func, "model_admin", None)
        if model_admin is None or request.method != "POST":
            return None
        primary_key = model_admin.model._meta.pk
        try:
            for key in request.POST.getlist(ACTION_CHECKBOX_NAME):
                primary_key.to_python(key)
        except ValidationError:
            return refusal_response(request, ValidationFailed(NOT_ROWS))
        return None


def bad_request(request, exception=None):
    return refusal_response(request, ValidationFailed(_("The request is not valid.")))


def page_not_found(request, exception=None):
    return refusal_response(request, NotFound(_("Not found.")))


def server_error(request):
    # No template with context here: whatever failed (the database, say) may fail again in it.
    if is_api(request):
        body = error_body(code="server_error", message="Internal server error.")
        return JsonResponse(body, status=500)
    return defaults.server_error(request)
