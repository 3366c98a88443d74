"""django-tables2 tables of the redeploy pages."""

import django_tables2 as tables
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .models import PodDeletionTarget, RedeployOperation, RedeployTarget

STATE_BADGES = {
    RedeployOperation.State.QUEUED: {"label": _("Queued"), "css": "badge-queued"},
    RedeployOperation.State.RUNNING: {"label": _("Running"), "css": "badge-pending"},
    RedeployTarget.State.PENDING: {"label": _("Pending"), "css": "badge-queued"},
    RedeployTarget.State.ROLLING: {"label": _("Rolling out"), "css": "badge-pending"},
    PodDeletionTarget.State.DELETING: {"label": _("Deleting"), "css": "badge-pending"},
    RedeployOperation.State.SUCCEEDED: {"label": _("Succeeded"), "css": "badge-success"},
    RedeployOperation.State.FAILED: {"label": _("Failed"), "css": "badge-failure"},
}


def state_badge(state: str) -> dict:
    return STATE_BADGES.get(state, {"label": state, "css": ""})


class OperationTable(tables.Table):
    created_at = tables.DateTimeColumn(
        verbose_name=_("Requested"),
        format="Y-m-d H:i:s T",
        linkify=("redeploy:operation", {"operation_id": tables.A("pk")}),
    )
    application_name = tables.Column(verbose_name=_("Application"))
    deployment_name = tables.Column(
        verbose_name=_("Namespace / Deployment"), order_by=("namespace", "deployment_name")
    )
    cluster_name = tables.Column(verbose_name=_("Cluster"), empty_values=())
    state = tables.Column(verbose_name=_("State"))
    ticket = tables.Column(
        verbose_name=_("Ticket no."),
        accessor="ticket__ticket_no",
        order_by=("ticket__ticket_no",),
        linkify=("tickets:detail", {"ticket_no": tables.A("ticket__ticket_no")}),
    )
    message = tables.Column(
        verbose_name=_("Result"), orderable=False, attrs={"td": {"class": "result-message"}}
    )

    class Meta:
        model = RedeployOperation
        fields = (
            "created_at",
            "application_name",
            "deployment_name",
            "cluster_name",
            "state",
            "ticket",
            "message",
        )
        order_by = ("-created_at",)
        attrs = {"class": "striped operations-table"}
        template_name = "django_tables2/table.html"

    def render_deployment_name(self, record: RedeployOperation) -> str:
        return f"{record.namespace}/{record.deployment_name}"

    def render_cluster_name(self, value: str) -> str:
        return value or _("every cluster")

    def render_state(self, record: RedeployOperation) -> str:
        # The raw state, not its display label, picks the badge.
        badge = state_badge(record.state)
        return format_html('<span class="badge {}">{}</span>', badge["css"], badge["label"])
