"""The requester's pod-delete pages: pick pods of an application approved for it, then watch
the operation. Thin: they read through selectors and pod_listings, and write through the service.

The form lists the Deployment's pods live, as the worker reads them (redeploy.pod_listings: the
web holds no cluster credentials): a pod can only be picked from what runs now. The deletion
itself is the worker's too (redeploy.pod_deletion_runs).
"""

from http import HTTPStatus

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRefresh

from cratos.exceptions import ServiceUnavailable, ValidationFailed
from cratos.security import client_ip
from tickets.grants import UnauthorizedAccess
from tickets.views import format_time_left

from . import pod_deletions, pod_listings, selectors
from .providers import DELETE_POD_GRANTS
from .rules import pod_delete_refusal
from .tables import state_badge

# Without JavaScript the operation page reloads itself this often until the deletion ends.
REFRESH_SECONDS = 3


def _binding_of(choice, binding_id: str):
    """The chosen binding of the application: the one named, else its first."""
    if choice is None or not choice.bindings:
        return None
    return next((b for b in choice.bindings if str(b.pk) == binding_id), choice.bindings[0])


def _pod_rows(binding) -> tuple[list[dict], str]:
    """The binding's pods as the table shows them, or why they cannot be listed."""
    listing = pod_listings.listed_pods(binding=binding)
    rows = [{"pod": pod, "age": timesince(pod.created_at)} for pod in listing.pods]
    return rows, listing.error


def _form_page(request, *, application: str, binding_id: str, error: str = "", status=200):
    choices = selectors.redeploy_choices(user=request.user, kind=DELETE_POD_GRANTS)
    choice = next((c for c in choices if c.application_name == application), None)
    binding = _binding_of(choice, binding_id)
    rows, kube_error = _pod_rows(binding) if binding is not None else ([], "")
    new_ticket = {"work_order": DELETE_POD_GRANTS.work_order_key}
    context = {
        "choices": [(c, format_time_left(c.seconds_left)) for c in choices],
        "choice": choice,
        "binding": binding,
        "rows": rows,
        "kube_error": kube_error,
        "error": error,
        "new_ticket_url": f"{reverse('tickets:create')}?{urlencode(new_ticket)}",
    }
    return render(request, "redeploy/pod_deletion_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def pod_deletion_new(request):
    """The applications the user may delete pods of; for the chosen one, its live pods."""
    refusal = pod_delete_refusal(user=request.user)
    if refusal is not None:
        raise refusal
    if request.method != "POST":
        return _form_page(
            request,
            application=request.GET.get("application", "").strip(),
            binding_id=request.GET.get("binding", ""),
        )
    application = request.POST.get("application", "").strip()
    binding_id = request.POST.get("binding", "")
    binding = selectors.binding_shown(application_name=application, binding_id=binding_id)
    try:
        if binding is None:
            raise ValidationFailed(_("Choose where the pods run."))
        operation = pod_deletions.request_pod_deletion(
            user=request.user,
            application_name=application,
            namespace=binding.namespace,
            deployment_name=binding.deployment_name,
            cluster_name=binding.cluster.name,
            pod_names=request.POST.getlist("pods"),
            request_ip=client_ip(request) or None,
        )
    except (UnauthorizedAccess, ValidationFailed, ServiceUnavailable) as refused:
        return _form_page(
            request,
            application=application,
            binding_id=binding_id,
            error=refused.message,
            status=refused.status_code,
        )
    return redirect("redeploy:pod-deletion", operation_id=operation.pk)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def pod_deletion_detail(request, operation_id):
    operation = selectors.visible_pod_deletion(operation_id=operation_id, user=request.user)
    if request.htmx:
        # The page's poll while the deletion runs: nothing new, or reload to show what is.
        if request.GET.get("seen") == _live_signature(operation):
            return HttpResponse(status=HTTPStatus.NO_CONTENT)
        return HttpResponseClientRefresh()
    context = {
        "operation": operation,
        "badge": state_badge(operation.state),
        "targets": [(target, state_badge(target.state)) for target in operation.targets.all()],
        "refresh_seconds": REFRESH_SECONDS,
        "live_signature": _live_signature(operation),
    }
    return render(request, "redeploy/pod_deletion_detail.html", context)


def _live_signature(operation) -> str:
    """What changes while pods are deleted and replaced: the operation's and each pod's state."""
    return ":".join([operation.state, *(target.state for target in operation.targets.all())])
