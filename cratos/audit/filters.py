"""django-filter filter sets of the redeploy app."""

from datetime import date, datetime, time, timedelta

import django_filters
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from cratos import widgets

from .models import AuditEvent

_DAY = widgets.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _text(field_name: str, label) -> django_filters.CharFilter:
    # Exact matches: each of these columns leads an index (name, created_at DESC).
    return django_filters.CharFilter(
        field_name=field_name, label=label, max_length=253, widget=widgets.TextInput
    )


class AuditEventFilter(django_filters.FilterSet):
    actor = _text("actor_username", _("Actor"))
    action = django_filters.ChoiceFilter(
        choices=AuditEvent.Action.choices,
        label=_("Action"),
        empty_label=_("Any action"),
        widget=widgets.Select,
    )
    outcome = django_filters.ChoiceFilter(
        choices=AuditEvent.Outcome.choices,
        label=_("Outcome"),
        empty_label=_("Any outcome"),
        widget=widgets.Select,
    )
    application = _text("application_name", _("Application"))
    cluster = _text("cluster_name", _("Cluster"))
    namespace = _text("namespace", _("Namespace"))
    ticket_no = _text("ticket_no", _("Ticket no."))
    # Whole days in the current time zone, both included; bounds on created_at keep the index.
    created_after = django_filters.DateFilter(
        method="filter_from_day", label=_("From (day)"), widget=_DAY
    )
    created_before = django_filters.DateFilter(
        method="filter_until_day", label=_("To (day, included)"), widget=_DAY
    )
    q = django_filters.CharFilter(
        field_name="message",
        lookup_expr="icontains",
        label=_("Message contains"),
        max_length=200,
        widget=widgets.TextInput(attrs={"type": "search"}),
    )

    class Meta:
        model = AuditEvent
        fields = ()

    def filter_from_day(self, queryset, name, value: date):
        return queryset.filter(created_at__gte=_start_of(value))

    def filter_until_day(self, queryset, name, value: date):
        if value == date.max:  # no day after it to stop before
            return queryset
        return queryset.filter(created_at__lt=_start_of(value + timedelta(days=1)))
