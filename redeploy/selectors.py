"""Reads of redeploys that feed pages, admin and API."""

from django.db.models import Prefetch, QuerySet

from .models import DeploymentBinding, RedeployOperation, RedeployTarget


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


def bindings_for(*, application_name: str) -> QuerySet[DeploymentBinding]:
    """Where an application runs: its bindings with their clusters."""
    return DeploymentBinding.objects.filter(application__name=application_name).select_related(
        "cluster"
    )
