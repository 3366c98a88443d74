"""django-tables2 tables of the audit log: the reviewers' page, the trails on other pages, and
the streamed export."""

import csv
import io
import json
from collections.abc import Iterator
from urllib.parse import quote

import django_tables2 as tables
from django.http import StreamingHttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django_tables2.data import TableData
from django_tables2.export import TableExport

from cratos.tables import RowsOnceTable

from .models import AuditEvent


def _reverse_or_none(name: str, *args) -> str | None:
    # The ticket and operation pages live in other modules; a missing route must not break audit.
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def ticket_url(ticket_no: str) -> str:
    return _reverse_or_none("tickets:detail", ticket_no) or f"/tickets/{quote(ticket_no)}/"


def operation_url(operation_id) -> str | None:
    return _reverse_or_none("redeploy:operation", operation_id)


class DatabaseOrderedRows(TableData):
    """Rows the database already ordered and limited.

    The table must not sort them again: a keyset page is only correct in the database's order,
    and an export is too large to sort in Python.
    """

    def __len__(self):
        return len(self.data)

    def order_by(self, aliases):
        pass


class StreamedRows(DatabaseOrderedRows):
    """An export's rows, read through a server-side cursor so memory stays flat."""

    def __iter__(self):
        return self.data.iterator(chunk_size=2000)


def _keep_newest_first(field: str) -> tuple[str, ...]:
    # (field, created_at, id) in one direction, so a descending sort is the same index read
    # backwards; the trailing id makes the order total, which keyset pagination needs.
    return (field, "-created_at", "-id")


class AuditEventTable(RowsOnceTable):
    time = tables.Column(
        accessor="created_at",
        verbose_name=_("Time"),
        attrs={"td": {"class": "audit-time"}},
        order_by=("created_at", "id"),
        orderable=True,
    )
    actor = tables.Column(
        accessor="actor_username",
        verbose_name=_("Actor"),
        order_by=_keep_newest_first("actor_username"),
        orderable=True,
    )
    action = tables.Column(
        verbose_name=_("Action"), order_by=_keep_newest_first("action"), orderable=True
    )
    outcome = tables.Column(
        verbose_name=_("Outcome"), order_by=_keep_newest_first("outcome"), orderable=True
    )
    ticket = tables.Column(accessor="ticket_no", verbose_name=_("Ticket"))
    application = tables.Column(
        accessor="application_name",
        verbose_name=_("Application"),
        order_by=_keep_newest_first("application_name"),
        orderable=True,
    )
    cluster = tables.Column(
        accessor="cluster_name",
        verbose_name=_("Cluster"),
        order_by=_keep_newest_first("cluster_name"),
        orderable=True,
    )
    namespace = tables.Column(verbose_name=_("Namespace"))
    deployment = tables.Column(accessor="deployment_name", verbose_name=_("Deployment"))
    message = tables.Column(verbose_name=_("Message"), attrs={"td": {"class": "audit-message"}})
    operation = tables.Column(accessor="operation_id", verbose_name=_("Redeploy operation"))
    # Exported, not shown: the page stays readable, the file keeps every detail.
    generation = tables.Column(verbose_name=_("Generation"), visible=False)
    resource_version = tables.Column(verbose_name=_("Resource version"), visible=False)
    request_ip = tables.Column(verbose_name=_("Request IP"), visible=False)
    celery_task_id = tables.Column(verbose_name=_("Task id"), visible=False)

    DEFAULT_SORT = "-time"

    class Meta:
        model = AuditEvent
        fields = ()
        orderable = False
        order_by = ("-time",)
        attrs = {"class": "striped audit-table"}
        template_name = "audit/_table.html"
        empty_text = _("No audit event matches these filters.")

    @classmethod
    def resolve_sort(cls, requested: str | None) -> tuple[str, tuple[str, ...]]:
        """The sort alias to use for `requested` (one orderable column, maybe "-"-prefixed)
        and the model ordering it stands for."""
        alias = (requested or "").split(",")[0].strip()
        # A plain name lookup: django-tables2's OrderBy() warns on arbitrary input with dots.
        column = cls.base_columns.get(alias.removeprefix("-"))
        if column is None or not column.orderable:
            alias = cls.DEFAULT_SORT
            column = cls.base_columns[alias.removeprefix("-")]
        order_by = column.order_by
        if alias.startswith("-"):
            order_by = order_by.opposite
        return alias, tuple(str(key) for key in order_by)

    def render_action(self, record: AuditEvent) -> str:
        return format_html(
            '{} <code class="muted">{}</code>', record.get_action_display(), record.action
        )

    def value_action(self, record: AuditEvent) -> str:
        return record.action

    def render_outcome(self, record: AuditEvent) -> str:
        css = {"SUCCESS": "badge-success", "FAILURE": "badge-failure"}.get(
            record.outcome, "badge-pending"
        )
        return format_html('<span class="badge {}">{}</span>', css, record.get_outcome_display())

    def value_outcome(self, record: AuditEvent) -> str:
        return record.outcome

    def render_time(self, record: AuditEvent) -> str:
        when = timezone.localtime(record.created_at)
        return format_html(
            '<time datetime="{}">{}</time>', when.isoformat(), format_date(when, "Y-m-d H:i:s")
        )

    def value_time(self, record: AuditEvent) -> str:
        return record.created_at.isoformat()

    def render_ticket(self, value: str) -> str:
        return format_html('<a href="{}">{}</a>', ticket_url(value), value)

    def value_ticket(self, value: str) -> str:
        return value

    def render_operation(self, value) -> str:
        url = operation_url(value)
        short = str(value)[:8]
        if url is None:
            return format_html('<span title="{}">{}</span>', value, short)
        return format_html('<a href="{}" title="{}">{}</a>', url, value, short)

    def value_operation(self, value) -> str:
        return str(value)


class AuditTrailTable(AuditEventTable):
    """The newest events of one ticket or application, on that object's own page.

    Built from an `audit_selectors.AuditTrail`; the page links to /audit/ for the rest.
    """

    class Meta(AuditEventTable.Meta):
        orderable = False
        template_name = "_rows_once_table.html"
        empty_text = _("No audit event yet.")

    def __init__(self, trail, **kwargs):
        super().__init__(data=DatabaseOrderedRows(trail.events), order_by=(), **kwargs)
        self.trail = trail
        # A trail is always newest first; its headers are labels, not sort links.
        for bound_column in self.columns.iterall():
            bound_column.column.orderable = False


class StreamingTableExport(TableExport):
    """django-tables2's export, streamed: rows are written as the database cursor yields them.

    Only CSV and JSON (tablib builds whole files in memory). CSV cells that a spreadsheet
    would run as a formula are prefixed with a quote: audit messages carry user input.
    """

    FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

    def __init__(self, export_format, table, exclude_columns=None, dataset_kwargs=None):
        if export_format not in (self.CSV, self.JSON):
            raise TypeError(f'Export format "{export_format}" is not supported.')
        self.format = export_format
        self.table = table
        self.exclude_columns = exclude_columns

    def _values(self) -> Iterator[list]:
        return self.table.as_values(exclude_columns=self.exclude_columns)

    @classmethod
    def _csv_cell(cls, value):
        if isinstance(value, str) and value.startswith(cls.FORMULA_PREFIXES):
            return "'" + value
        return value

    def _csv(self) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in self._values():
            writer.writerow([self._csv_cell(value) for value in row])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    def _json(self) -> Iterator[str]:
        # Keys are the column names, not the (translated) headers: scripts read these files.
        exclude = self.exclude_columns or ()
        keys = [
            column.name
            for column in self.table.columns.iterall()
            if not (column.column.exclude_from_export or column.name in exclude)
        ]
        rows = self._values()
        next(rows)
        yield "["
        for index, row in enumerate(rows):
            item = json.dumps(dict(zip(keys, row, strict=True)), ensure_ascii=False, default=str)
            yield ("," if index else "") + item
        yield "]"

    def response(self, filename=None):
        stream = self._csv() if self.format == self.CSV else self._json()
        response = StreamingHttpResponse(stream, content_type=self.content_type())
        if filename is not None:
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
