"""The reviewers' audit pages. Read-only: GET only, and nothing here writes an audit event."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.utils.translation import gettext as _
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.export import ExportMixin, TableExport

from cratos.exceptions import PermissionRefused, ValidationFailed

from . import selectors
from .filters import AuditEventFilter
from .tables import AuditEventTable, DatabaseOrderedRows, StreamedRows, StreamingTableExport

PER_PAGE_CHOICES = (25, 50, 100)
DEFAULT_PER_PAGE = 50


class AuditEventListView(LoginRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    """`/audit/`: filtered, sorted, keyset-paginated events; `?_export=csv|json` for the file.

    Pages are found by cursor (`after`/`before`), never by OFFSET and never with a COUNT, so
    a page costs the same handful of queries on ten thousand events or a million.
    """

    http_method_names = ["get", "head", "options"]
    filterset_class = AuditEventFilter
    table_class = AuditEventTable
    template_name = "audit/event_list.html"
    export_class = StreamingTableExport
    export_formats = (TableExport.CSV, TableExport.JSON)
    export_name = "audit-events"

    def dispatch(self, request, *args, **kwargs):
        # Anonymous users fall through to LoginRequiredMixin, which sends them to log in.
        if request.user.is_authenticated and not selectors.may_review_audit(user=request.user):
            raise PermissionRefused(_("Only reviewers may read the audit log."))
        return super().dispatch(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.audit_events()

    def get(self, request, *args, **kwargs):
        self.sort, self.ordering = self.table_class.resolve_sort(request.GET.get("sort"))
        self.export_format = request.GET.get(self.export_trigger_param)
        if not self.export_format:
            return super().get(request, *args, **kwargs)
        if self.export_format not in self.export_formats:
            raise ValidationFailed(_("Export format must be csv or json."))
        self.filterset = self.get_filterset(self.get_filterset_class())
        if not self.filterset.is_valid():
            # Exporting everything when a filter did not parse would hand out the wrong set.
            raise ValidationFailed(
                _("Fix the filters before exporting: %(errors)s")
                % {
                    "errors": "; ".join(
                        f"{name}: {' '.join(messages)}"
                        for name, messages in self.filterset.errors.items()
                    )
                }
            )
        self.object_list = self.filterset.qs
        return self.create_export(self.export_format)

    def per_page(self) -> int:
        try:
            requested = int(self.request.GET.get("per_page", DEFAULT_PER_PAGE))
        except ValueError:
            return DEFAULT_PER_PAGE
        return requested if requested in PER_PAGE_CHOICES else DEFAULT_PER_PAGE

    def get_table(self, **kwargs):
        if self.export_format:
            events, self.export_truncated = selectors.audit_events_for_export(
                events=self.object_list, ordering=self.ordering
            )
            return self.table_class(data=StreamedRows(events), order_by=self.sort, **kwargs)
        page = selectors.audit_event_page(
            events=self.object_list,
            sort=self.sort,
            ordering=self.ordering,
            per_page=self.per_page(),
            after=self.request.GET.get("after"),
            before=self.request.GET.get("before"),
        )
        # No request= here: the table would re-read ?sort= itself, unvalidated.
        table = self.table_class(
            data=DatabaseOrderedRows(page.events), order_by=self.sort, **kwargs
        )
        table.keyset_page = page
        return table

    def create_export(self, export_format):
        response = super().create_export(export_format)
        response["X-Export-Row-Limit"] = str(selectors.EXPORT_MAX_ROWS)
        response["X-Export-Truncated"] = "true" if self.export_truncated else "false"
        return response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            export_formats=self.export_formats,
            export_row_limit=selectors.EXPORT_MAX_ROWS,
            per_page_choices=PER_PAGE_CHOICES,
            per_page=self.per_page(),
            sort=self.sort,
        )
        return context


audit_event_list = AuditEventListView.as_view()
