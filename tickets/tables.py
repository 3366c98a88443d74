import django_tables2 as tables
from django.utils.translation import gettext_lazy as _

from .models import Ticket


class TicketTable(tables.Table):
    ticket_no = tables.Column(
        verbose_name=_("Ticket no."),
        linkify=("tickets:detail", {"ticket_no": tables.A("ticket_no")}),
    )
    work_order = tables.Column(verbose_name=_("Work order"), order_by=("work_order__name",))
    applications = tables.Column(
        verbose_name=_("Applications"), accessor="pk", orderable=False, empty_values=()
    )
    # The raw state (not its display label) picks the badge's colour and words.
    state = tables.TemplateColumn(
        '{% include "tickets/_state_badge.html" with value=record.state %}',
        verbose_name=_("State"),
    )
    created_at = tables.DateTimeColumn(verbose_name=_("Created"), format="Y-m-d H:i T")
    submitted_at = tables.DateTimeColumn(verbose_name=_("Submitted"), format="Y-m-d H:i T")

    class Meta:
        model = Ticket
        fields = ("ticket_no", "work_order", "applications", "state", "created_at", "submitted_at")
        order_by = ("-created_at",)
        attrs = {"class": "striped tickets-table"}
        template_name = "django_tables2/table.html"

    def render_applications(self, record: Ticket) -> str:
        # Entries are prefetched by the view; one query for the whole page.
        return ", ".join(entry.name for entry in record.entries.all())
