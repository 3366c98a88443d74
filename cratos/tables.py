"""django-tables2 tables whose rows are rendered once per column, not once per cell.

Profiled on the audit page (50 rows, 11 columns): django-tables2's stock body spends about
two thirds of the page's time per cell, inspecting the render method's signature
(`call_with_appropriate`), recomputing the column's `<td>` attributes and resolving template
variables. None of that depends on the row. `RowsOnceTable` works it out once per column
(which render method, with which arguments, the `<td>` attributes) and then renders each row
as one string; the headers, sorting, pagination and exports stay django-tables2's.
"""

import inspect
from collections.abc import Callable

import django_tables2 as tables
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.dateformat import format as format_date
from django.utils.encoding import force_str
from django.utils.formats import localize
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime, template_localtime

Cell = Callable[[object], object]


def _as_text(value) -> str:
    # What `{{ cell }}` prints: local time, localized, escaped unless already safe.
    return conditional_escape(localize(template_localtime(value)))


class DateTimeColumn(tables.Column):
    """A time in the current time zone, as `{{ value|date:format }}` writes it (django-tables2's
    DateTimeColumn renders a template per cell)."""

    def __init__(self, *, format: str, **kwargs):
        super().__init__(**kwargs)
        self.format = format

    def render(self, value) -> str:
        return format_date(localtime(value), self.format)


class RowsOnceTable(tables.Table):
    """Columns may be plain, linkified, or have a `render_<name>(value | record)` method.

    A column whose cell needs more (a TemplateColumn, a `bound_row` argument, attributes
    computed per record) is refused when the table is rendered, so no page silently drifts
    from what django-tables2 would have shown.
    """

    def _value_getter(self, bound_column) -> Callable[[object], object]:
        path = bound_column.accessor.bits
        if len(path) == 1:
            name = path[0]
            model = getattr(self._meta, "model", None)
            try:
                field = model._meta.get_field(name) if model else None
            except FieldDoesNotExist:
                field = None
            # As django-tables2 does: a field with choices shows its label.
            if field is not None and field.choices and isinstance(field, models.Field):
                display = f"get_{name}_display"
                return lambda record: getattr(record, display)()
        return bound_column.accessor.resolve

    def _cell(self, bound_column, call, *, default, link=None) -> Cell:
        """cell(record): `call` given the column's value and/or the record, or `default` when
        the value is empty, as django-tables2 decides it per cell."""
        column = bound_column.column
        if isinstance(column, tables.TemplateColumn):
            raise TypeError(f"{type(self).__name__}.{bound_column.name}: no TemplateColumn")
        value_of = self._value_getter(bound_column)
        wanted = set(inspect.signature(call).parameters)
        if not wanted <= {"value", "record"}:
            raise TypeError(f"{type(self).__name__}.{bound_column.name}: called with {wanted}")
        empty = column.empty_values
        many = isinstance(column, tables.ManyToManyColumn)
        # A column that renders from the record alone and has no empty values never reads its
        # value: for a field with choices that was get_FOO_display() per cell, for nothing.
        reads_value = "value" in wanted or bool(empty) or many or link is not None

        def cell(record):
            value = value_of(record) if reads_value else None
            if value in empty or (many and not value.exists()):
                return default
            arguments = {"value": value, "record": record}
            content = call(**{name: arguments[name] for name in wanted})
            if link:
                content = link(content, value=value, record=record, bound_column=bound_column)
            return content

        return cell

    def as_values(self, exclude_columns=()):
        """django-tables2's export rows (value_<name>, else render_<name>, else the column's
        render), each column's method found once: per cell, a 50,000-row export outlasted
        gunicorn's 30 s timeout."""
        columns = [
            column
            for column in self.columns.iterall()
            if not (column.column.exclude_from_export or column.name in (exclude_columns or ()))
        ]
        yield [force_str(column.header, strings_only=True) for column in columns]
        cells = []
        for column in columns:
            if type(column.column).value is not tables.Column.value:
                raise TypeError(f"{type(self).__name__}.{column.name}: a value() of its own")
            call = column.column.render if column.value == column.column.value else column.value
            cells.append(self._cell(column, call, default=None))
        for row in self.rows:
            yield [force_str(cell(row.record), strings_only=True) for cell in cells]

    def body_rows(self) -> list[SafeString]:
        """This page's rows, each `<tr>…</tr>` as django_tables2/table.html writes it."""
        if self.row_attrs:
            raise TypeError(f"{type(self).__name__}: row_attrs are computed per row")
        plan = []
        for bound_column in self.columns:
            td = bound_column.attrs["td"].as_html()
            cell = self._cell(
                bound_column,
                bound_column.render,
                default=bound_column.default,
                link=bound_column.link,
            )
            plan.append((format_html("<td {}>", td), cell))
        records = [row.record for row in self.paginated_rows]
        return [
            mark_safe(
                f'<tr class="{"odd" if index % 2 else "even"}">'
                + "".join(f"{td}{_as_text(cell(record))}</td>" for td, cell in plan)
                + "</tr>"
            )
            for index, record in enumerate(records)
        ]
