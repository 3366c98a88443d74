"""The application pages: every signed-in user may browse them (requesters pick applications
for their tickets); reviewers also see each application's audit trail. Read-only."""

import django_tables2 as tables
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET
from django_tables2 import RequestConfig

from cratos.audit.selectors import audit_events_for_application, may_review_audit
from cratos.audit.tables import AuditTrailTable
from cratos.tables import RowsOnceTable
from tickets.views import format_time_left

from . import application_cells, selectors
from .models import Application

APPLICATIONS_PER_PAGE = 25
SEARCH_MAX_LENGTH = Application._meta.get_field("name").max_length


class ApplicationTable(RowsOnceTable):
    name = tables.Column(
        verbose_name=_("Application"), linkify=("redeploy:application", {"name": tables.A("name")})
    )
    description = tables.Column(verbose_name=_("Description"))
    owner_teams = tables.ManyToManyColumn(verbose_name=_("Owners"), default="—")
    tags = tables.Column(verbose_name=_("Tags"), orderable=False)
    binding_count = tables.Column(verbose_name=_("Bindings"))
    # Live state as the last sync stored it; the web process never asks a cluster.
    state = tables.Column(
        verbose_name=_("Ready / desired"), accessor="pk", orderable=False, empty_values=()
    )
    last_redeploy_at = tables.Column(verbose_name=_("Last redeploy"), empty_values=())

    class Meta:
        model = Application
        fields = (
            "name",
            "description",
            "owner_teams",
            "tags",
            "binding_count",
            "state",
            "last_redeploy_at",
        )
        order_by = ("name",)
        attrs = {"class": "striped applications-table"}
        template_name = "_rows_once_table.html"
        empty_text = _("No application matches this search.")

    def render_tags(self, value: list[dict]) -> str:
        return application_cells.tag_chips(value)

    def render_state(self, record: Application) -> str:
        return application_cells.binding_states(record.bindings.all())

    def render_last_redeploy_at(self, value) -> str:
        return application_cells.last_redeploy(value)


@login_required
@require_GET
def application_list(request):
    search = request.GET.get("q", "").strip()[:SEARCH_MAX_LENGTH]
    table = ApplicationTable(selectors.applications_listed(search=search))
    RequestConfig(request, paginate={"per_page": APPLICATIONS_PER_PAGE}).configure(table)
    return render(request, "redeploy/application_list.html", {"table": table, "search": search})


@login_required
@require_GET
def application_detail(request, name: str):
    application = selectors.application_by_name(name=name)
    live = selectors.live_authorization_for(user=request.user, application_name=application.name)
    audit_trail = None
    if may_review_audit(user=request.user):
        audit_trail = AuditTrailTable(
            audit_events_for_application(application_name=application.name),
            exclude=("application",),
        )
    context = {
        "application": application,
        "bindings": application.bindings.all(),
        "authorization": live,
        "time_left": format_time_left(live.seconds_left) if live else "",
        "audit_trail": audit_trail,
    }
    return render(request, "redeploy/application_detail.html", context)
