import django_tables2 as tables
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from cratos.tables import DateTimeColumn, RowsOnceTable

from .models import Ticket

STATE_WORDS = {
    "NEW": _("Draft"),
    "IN_APPROVAL": _("In approval"),
    "APPROVED": _("Approved"),
    "COMPLETED": _("Completed"),
    "REJECTED": _("Rejected"),
    "CLOSED": _("Closed"),
}


def state_badge(state: str) -> str:
    """A ticket's state as a badge: the raw state picks its colour and words."""
    return format_html(
        '<span class="badge badge-{}">{}</span>', state.lower(), STATE_WORDS.get(state, state)
    )


class TicketTable(RowsOnceTable):
    ticket_no = tables.Column(
        verbose_name=_("Ticket no."),
        linkify=("tickets:detail", {"ticket_no": tables.A("ticket_no")}),
    )
    work_order = tables.Column(verbose_name=_("Work order"), order_by=("work_order__name",))
    applications = tables.Column(
        verbose_name=_("Applications"), accessor="pk", orderable=False, empty_values=()
    )
    state = tables.Column(verbose_name=_("State"), empty_values=())
    created_at = DateTimeColumn(verbose_name=_("Created"), format="Y-m-d H:i T")
    submitted_at = DateTimeColumn(verbose_name=_("Submitted"), format="Y-m-d H:i T")

    class Meta:
        model = Ticket
        fields = ("ticket_no", "work_order", "applications", "state", "created_at", "submitted_at")
        order_by = ("-created_at",)
        attrs = {"class": "striped tickets-table"}
        template_name = "_rows_once_table.html"

    def render_applications(self, record: Ticket) -> str:
        # Entries are prefetched by the view; one query for the whole page.
        return ", ".join(entry.name for entry in record.entries.all())

    def render_state(self, record: Ticket) -> str:
        return state_badge(record.state)
