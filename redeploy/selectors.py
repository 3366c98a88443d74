"""Reads of redeploys that feed pages, admin and API."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import Count, F, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from cratos.audit.selectors import may_review_audit
from cratos.exceptions import NotFound
from cratos.validation import parse_id
from tickets.grants import GrantKind
from tickets.selectors import LiveAuthorization, live_authorizations

from .models import (
    Application,
    DeploymentBinding,
    PodDeletion,
    RedeployOperation,
    RedeployTarget,
)
from .providers import REDEPLOY_GRANTS


def operation_by_id(*, operation_id) -> RedeployOperation:
    """The operation with its targets (raises RedeployOperation.DoesNotExist)."""
    return (
        RedeployOperation.objects.select_related("requested_by", "ticket")
        .prefetch_related(
            Prefetch("targets", queryset=RedeployTarget.objects.order_by("cluster_name", "pk"))
        )
        .get(pk=operation_id)
    )


def operations_of(*, user) -> QuerySet[RedeployOperation]:
    """The user's redeploys, newest first."""
    return (
        RedeployOperation.objects.filter(requested_by=user)
        .select_related("ticket")
        .prefetch_related("targets")
        .order_by("-created_at")
    )


def redeploy_targets_of(*, ticket) -> QuerySet[RedeployTarget]:
    """Every redeploy attempt recorded on a ticket (the ticket page's second table)."""
    return RedeployTarget.objects.filter(ticket=ticket).order_by("operated_at", "pk")


# A cluster's credentials are the worker's: pages load bindings without them, so the web never
# decrypts one.
_CLUSTER_CREDENTIALS = [
    f"cluster__{name}" for name in ("token", "client_cert_data", "client_key_data", "kubeconfig")
]


def binding_shown(*, application_name: str, binding_id: str) -> DeploymentBinding | None:
    """The application's binding of that id, its cluster without credentials (None if none)."""
    binding_pk = parse_id(binding_id)
    if binding_pk is None:
        return None
    bindings = bindings_for(application_name=application_name).defer(*_CLUSTER_CREDENTIALS)
    return bindings.filter(pk=binding_pk).first()


def bindings_for(*, application_name: str) -> QuerySet[DeploymentBinding]:
    """Where an application runs: its bindings with their clusters."""
    return DeploymentBinding.objects.filter(application__name=application_name).select_related(
        "cluster"
    )


def may_view_operation(*, operation: RedeployOperation, user) -> bool:
    """Who sees a redeploy: its requester, staff and audit reviewers."""
    return user.is_authenticated and (
        operation.requested_by_id == user.pk or user.is_staff or may_review_audit(user=user)
    )


def visible_operation(*, operation_id, user) -> RedeployOperation:
    """The operation as `operation_by_id` loads it, if `user` may see it; NotFound alike
    otherwise, so operation ids cannot be probed."""
    try:
        operation = operation_by_id(operation_id=operation_id)
    except (RedeployOperation.DoesNotExist, ValidationError):
        operation = None
    if operation is None or not may_view_operation(operation=operation, user=user):
        raise NotFound(format_lazy(_("Redeploy {id} does not exist."), id=operation_id))
    return operation


def visible_pod_deletion(*, operation_id, user) -> PodDeletion:
    """A pod deletion with its targets, if `user` may see it (as a redeploy); NotFound alike
    otherwise."""
    operation = (
        PodDeletion.objects.select_related("requested_by", "ticket")
        .prefetch_related("targets")
        .filter(pk=operation_id)
        .first()
    )
    if operation is None or not may_view_operation(operation=operation, user=user):
        raise NotFound(format_lazy(_("Pod deletion {id} does not exist."), id=operation_id))
    return operation


def bindings_matching(
    *, application_name: str, namespace: str, deployment_name: str, cluster_name: str = ""
) -> QuerySet[DeploymentBinding]:
    """The bindings a redeploy of these names would restart (every cluster when none is named)."""
    bindings = bindings_for(application_name=application_name).filter(
        namespace=namespace, deployment_name=deployment_name
    )
    if cluster_name:
        bindings = bindings.filter(cluster__name=cluster_name)
    return bindings.order_by("cluster__name")


def bindings_matching_each(redeploys: Sequence) -> list[list[DeploymentBinding]]:
    """bindings_matching of each redeploy (anything with its four names, an operation), in one
    query: a batch starts hundreds. Clusters come without their credentials."""
    found = defaultdict(list)
    bindings = (
        DeploymentBinding.objects.filter(
            application__name__in={item.application_name for item in redeploys},
            namespace__in={item.namespace for item in redeploys},
            deployment_name__in={item.deployment_name for item in redeploys},
        )
        .annotate(application_name=F("application__name"))
        .select_related("cluster")
        .defer(*_CLUSTER_CREDENTIALS)
        .order_by("cluster__name")
    )
    for binding in bindings:
        key = (binding.application_name, binding.namespace, binding.deployment_name)
        found[key].append(binding)
    return [
        [
            binding
            for binding in found[item.application_name, item.namespace, item.deployment_name]
            if not item.cluster_name or binding.cluster.name == item.cluster_name
        ]
        for item in redeploys
    ]


@dataclass(frozen=True)
class RedeployChoice:
    """An application the user may redeploy now, the authorization that allows it, and where it
    runs."""

    application_name: str
    ticket_no: str
    seconds_left: int
    bindings: list[DeploymentBinding]


def redeploy_choices(*, user, kind: GrantKind = REDEPLOY_GRANTS) -> list[RedeployChoice]:
    """The user's live authorizations of one kind (soonest to expire first) with each
    application's bindings: what a request form offers (a pod-delete approval does not allow
    a redeploy). Two queries and one Redis round trip."""
    live = live_authorizations(user=user, work_order_key=kind.work_order_key)
    names = [item.entry.name for item in live]
    by_application: dict[str, list[DeploymentBinding]] = {name: [] for name in names}
    bindings = (
        DeploymentBinding.objects.filter(application__name__in=names)
        .select_related("application", "cluster")
        .defer(*_CLUSTER_CREDENTIALS)
        .order_by("cluster__name", "namespace", "deployment_name")
    )
    for binding in bindings:
        by_application[binding.application.name].append(binding)
    return [
        RedeployChoice(
            application_name=item.entry.name,
            ticket_no=item.grant.ticket_no,
            seconds_left=item.seconds_left,
            bindings=by_application[item.entry.name],
        )
        for item in live
    ]


# -- applications ----------------------------------------------------------------------------


def applications_listed(*, search: str = "") -> QuerySet[Application]:
    """Applications with their number of bindings (`binding_count`), their bindings as the last
    sync saw them, and when they were last redeployed (`last_redeploy_at`), by name; `search`
    keeps those whose name contains it, in any case. Only the database is read."""
    last_redeploy = RedeployOperation.objects.filter(
        application_name=OuterRef("name"), started_at__isnull=False
    ).order_by("-started_at")
    # A count per row, not Count("bindings"): that GROUP BY aggregated every application before
    # the page's LIMIT (24 ms of the page with 5,000), and kept the paginator's COUNT from
    # dropping the annotations.
    bindings = (
        DeploymentBinding.objects.filter(application=OuterRef("pk"))
        .order_by()
        .values("application")
        .annotate(count=Count("pk"))
        .values("count")
    )
    applications = (
        Application.objects.annotate(
            binding_count=Coalesce(Subquery(bindings), 0),
            last_redeploy_at=Subquery(last_redeploy.values("started_at")[:1]),
            last_redeploy_id=Subquery(last_redeploy.values("pk")[:1]),
        )
        .prefetch_related(
            "owner_teams",
            Prefetch("bindings", queryset=DeploymentBinding.objects.select_related("cluster")),
        )
        .order_by("name")
    )
    if search:
        applications = applications.filter(name__icontains=search)
    return applications


def application_by_name(*, name: str) -> Application:
    """The application with its bindings and their clusters (raises NotFound)."""
    application = (
        Application.objects.prefetch_related(
            Prefetch(
                "bindings",
                queryset=DeploymentBinding.objects.select_related("cluster").order_by(
                    "cluster__name", "namespace", "deployment_name"
                ),
            ),
            "owner_teams",
        )
        .filter(name=name)
        .first()
    )
    if application is None:
        raise NotFound(format_lazy(_("Application {name} does not exist."), name=name))
    return application


def live_authorization_for(*, user, application_name: str) -> LiveAuthorization | None:
    """The user's live authorization to redeploy the application, if they hold one."""
    return next(
        (item for item in live_authorizations(user=user) if item.entry.name == application_name),
        None,
    )
