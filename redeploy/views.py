"""The requester's redeploy pages. Thin: they read through selectors and write through services.

No view runs inside a transaction: request_redeploy commits its operation, then queues the task.
"""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django_tables2 import RequestConfig

from cratos.api import error_body
from cratos.exceptions import NotFound, ServiceUnavailable, ValidationFailed
from cratos.security import client_ip
from tickets.grants import UnauthorizedAccess
from tickets.selectors import missing_authorization
from tickets.views import format_time_left

from . import redeploys, selectors
from .exceptions import binding_missing_message
from .forms import RedeployRequestForm
from .providers import REDEPLOY_GRANTS
from .rules import redeploy_refusal
from .serializers import OperationSerializer
from .tables import STATE_BADGES, OperationTable, state_badge

OPERATIONS_PER_PAGE = 20
# How often the operation page asks for news while the redeploy runs (static/js/operation.js,
# which waits this long after each answer): its end shows within a second of its commit, and a
# page open for a whole 10-minute rollout asks 800 times, each a few small queries.
POLL_MILLISECONDS = 750
# Without JavaScript the operation page reloads itself this often until the redeploy ends.
NOSCRIPT_REFRESH_SECONDS = 5


# Words and badge colour of each operation and target state; the page's script gets the same.
def _require_permission(user) -> None:
    # The form is not even shown to a user the service would refuse (and audit) on POST.
    refusal = redeploy_refusal(user=user)
    if refusal:
        raise refusal


# -- the request form ----------------------------------------------------------------------


def _choice_for(choices, application_name: str):
    return next((c for c in choices if c.application_name == application_name), None)


def _bindings_in_view(choices, application_name: str) -> list:
    """The bindings the form's datalists offer: the chosen application's, else those of every
    application the user may redeploy now."""
    if application_name:
        choice = _choice_for(choices, application_name)
        if choice is not None:
            return choice.bindings
        return list(selectors.bindings_for(application_name=application_name))
    return [binding for choice in choices for binding in choice.bindings]


def _binding_json(binding) -> dict:
    return {
        "cluster": binding.cluster.name,
        "namespace": binding.namespace,
        "deployment": binding.deployment_name,
    }


def _places(bindings) -> list[dict]:
    """Bindings grouped by (namespace, Deployment), each with the clusters it runs in."""
    places: dict[tuple[str, str], list[str]] = {}
    for binding in bindings:
        places.setdefault((binding.namespace, binding.deployment_name), []).append(
            binding.cluster.name
        )
    return [
        {"namespace": namespace, "deployment": deployment, "clusters": sorted(clusters)}
        for (namespace, deployment), clusters in sorted(places.items())
    ]


def _prefill(request, choices) -> dict:
    """Initial values from the query (?application=web&namespace=...); when only the
    application is given and it runs as one Deployment, that Deployment's names too."""
    # NUL names nothing (PostgreSQL cannot even be asked about it): dropped.
    initial = {
        name: request.GET.get(name, "").replace("\x00", "")[: field.max_length or 253].strip()
        for name, field in RedeployRequestForm.base_fields.items()
    }
    application = initial["application"]
    if application and not (initial["namespace"] or initial["deployment"]):
        places = {
            (binding.namespace, binding.deployment_name)
            for binding in _bindings_in_view(choices, application)
        }
        if len(places) == 1:
            ((initial["namespace"], initial["deployment"]),) = places
    return initial


def _missing(user, refusal) -> list:
    """Why each application of an "Unauthorized access" refusal had no live authorization."""
    if not isinstance(refusal, UnauthorizedAccess):
        return []
    return [
        missing_authorization(
            user=user, application_name=name, work_order_key=REDEPLOY_GRANTS.work_order_key
        )
        for name in refusal.missing
    ]


def _form_page(request, form, choices, *, status: int = 200, missing=()):
    # What the form accepted: a typed name it refused (NUL, too long) narrows nothing.
    if form.is_bound:
        application = form.cleaned_data.get("application", "")
    else:
        application = form.initial.get("application", "")
    bindings = _bindings_in_view(choices, application.strip())
    context = {
        "form": form,
        "choices": choices,
        "choice_rows": [
            (choice, format_time_left(choice.seconds_left), _places(choice.bindings))
            for choice in choices
        ],
        "bindings_json": {
            choice.application_name: [_binding_json(b) for b in choice.bindings]
            for choice in choices
        },
        "namespaces": sorted({b.namespace for b in bindings}),
        "deployments": sorted({b.deployment_name for b in bindings}),
        "clusters": sorted({b.cluster.name for b in bindings}),
        "missing_authorizations": missing,
    }
    return render(request, "redeploy/request_form.html", context, status=status)


def _confirm_page(request, form, choice):
    fields = form.cleaned_data
    bindings = list(
        selectors.bindings_matching(
            application_name=fields["application"],
            namespace=fields["namespace"],
            deployment_name=fields["deployment"],
            cluster_name=fields["cluster"],
        )
    )
    context = {
        "form": form,
        "fields": fields,
        "choice": choice,
        "clusters": [binding.cluster.name for binding in bindings],
        # As the last sync saw them: who else deploys it, and where it is paused.
        "managed_bindings": [binding for binding in bindings if binding.managed_by],
        "paused_bindings": [binding.cluster.name for binding in bindings if binding.paused],
        "missing_binding": binding_missing_message(fields["deployment"]),
        "change_query": urlencode(fields),
    }
    return render(request, "redeploy/request_confirm.html", context)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def redeploy_request(request):
    """The form; a confirmation that spells out what will be restarted; then the request."""
    user = request.user
    if request.method != "POST":
        _require_permission(user)
        choices = selectors.redeploy_choices(user=user)
        form = RedeployRequestForm(initial=_prefill(request, choices))
        return _form_page(request, form, choices)

    form = RedeployRequestForm(request.POST)
    if not form.is_valid():
        _require_permission(user)
        choices = selectors.redeploy_choices(user=user)
        return _form_page(request, form, choices, status=400)
    try:
        choices = selectors.redeploy_choices(user=user)
    except ServiceUnavailable:
        # Nothing to confirm without Redis: the service refuses in its words and audits it.
        choices = []
    choice = _choice_for(choices, form.cleaned_data["application"])
    # Without a live authorization (or the permission) there is nothing to confirm: the service
    # refuses at once, in its own words, and audits the attempt.
    confirmed = request.POST.get("confirmed") == "1"
    if not confirmed and choice is not None and redeploy_refusal(user=user) is None:
        return _confirm_page(request, form, choice)
    try:
        operation = redeploys.request_redeploy(
            user=user, request_ip=client_ip(request) or None, **form.request_fields()
        )
    except (UnauthorizedAccess, ValidationFailed, ServiceUnavailable) as refusal:
        # Any other refusal (no permission) is the error page's.
        form.add_error(None, refusal.message)
        return _form_page(
            request,
            form,
            choices,
            status=refusal.status_code,
            missing=_missing(user, refusal),
        )
    return redirect("redeploy:operation", operation_id=operation.pk)


# -- operations ----------------------------------------------------------------------------


@login_required
@require_GET
def operation_list(request):
    table = OperationTable(selectors.operations_of(user=request.user))
    RequestConfig(request, paginate={"per_page": OPERATIONS_PER_PAGE}).configure(table)
    return render(request, "redeploy/operation_list.html", {"table": table})


def _next_step(user, operation) -> dict | None:
    """After a failed redeploy that restarted nothing, the authorization went back: the time it
    has left and the prefilled form to try again (for its requester, if still allowed)."""
    if (
        operation.state != operation.State.FAILED
        or operation.requested_by_id != user.pk
        or redeploy_refusal(user=user) is not None
    ):
        return None
    live = selectors.live_authorization_for(user=user, application_name=operation.application_name)
    if live is None:
        return {"given_back": False, "application_name": operation.application_name}
    query = {
        "application": operation.application_name,
        "namespace": operation.namespace,
        "deployment": operation.deployment_name,
        "cluster": operation.cluster_name,
    }
    return {
        "given_back": True,
        "seconds_left": live.seconds_left,
        "time_left": format_time_left(live.seconds_left),
        "retry_query": urlencode(query),
    }


@login_required
@require_GET
def operation_detail(request, operation_id):
    operation = selectors.visible_operation(operation_id=operation_id, user=request.user)
    targets = [(target, state_badge(target.state)) for target in operation.targets.all()]
    context = {
        "operation": operation,
        "next_step": _next_step(request.user, operation),
        "badge": state_badge(operation.state),
        "targets": targets,
        "state_badges": STATE_BADGES,
        "poll_milliseconds": POLL_MILLISECONDS,
        "refresh_seconds": NOSCRIPT_REFRESH_SECONDS,
    }
    return render(request, "redeploy/operation_detail.html", context)


@never_cache
@login_required
@require_GET
def operation_status(request, operation_id):
    """The operation page's news: the API's JSON shape of the operation."""
    try:
        operation = selectors.visible_operation(operation_id=operation_id, user=request.user)
    except NotFound as refusal:
        return JsonResponse(
            error_body(code=refusal.code, message=refusal.message), status=refusal.status_code
        )
    data = OperationSerializer(operation, context={"request": request}).data
    return JsonResponse(data)
