from django.shortcuts import render

from cratos.exceptions import DomainError


class DomainErrorMiddleware:
    """Pages render a refusal that escaped a view as the error page, with its status code."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DomainError):
            return render(request, "error.html", {"error": exception}, status=exception.status_code)
        return None
