"""`/dashboard/`: the reviewers' figures as cards and server-side SVG charts. Read-only.

The figures come from redeploy.dashboard (a fixed handful of queries); this module only puts
them into words, charts and tables, in the reader's language.
"""

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth.mixins import LoginRequiredMixin
from django.utils import formats, timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext
from django.views.generic import TemplateView

from cratos.audit.selectors import may_review_audit
from cratos.exceptions import PermissionRefused
from tickets.models import Ticket

from . import charts, dashboard

# A date under every fifth column keeps the time axis legible on a phone.
LABEL_EVERY = 5

SUCCEEDED, FAILED, UNFINISHED = "series-succeeded", "series-failed", "series-unfinished"
RATE = "series-rate"
RECENT, EARLIER = "series-recent", "series-earlier"

# The same words as the state badges (templates/tickets/_state_badge.html).
STATE_LABELS = {
    Ticket.State.NEW: gettext_lazy("Draft"),
    Ticket.State.IN_APPROVAL: gettext_lazy("In approval"),
    Ticket.State.APPROVED: gettext_lazy("Approved"),
    Ticket.State.COMPLETED: gettext_lazy("Completed"),
    Ticket.State.REJECTED: gettext_lazy("Rejected"),
    Ticket.State.CLOSED: gettext_lazy("Closed"),
}


@dataclass(frozen=True)
class Stat:
    label: str
    value: str
    note: str


@dataclass(frozen=True)
class LegendItem:
    css_class: str
    label: str


@dataclass(frozen=True)
class ChartPanel:
    """A card: its chart (None: nothing to draw, say `empty_message`) and the chart's numbers."""

    key: str
    title: str
    svg: SafeString | None
    empty_message: str
    headers: list[str]
    rows: list[list[str]]
    legend: list[LegendItem] = field(default_factory=list)
    wide: bool = False


def format_rate(rate: Decimal | None) -> str:
    if rate is None:
        return "—"
    return _("%(rate)s%%") % {"rate": formats.number_format(rate, 1)}


def format_duration(duration: timedelta | None) -> str:
    """Short and coarse ("3 h 20 min"): a median is not read to the second past a minute."""
    if duration is None:
        return "—"
    seconds = round(duration.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        if hours:
            return _("%(days)d d %(hours)d h") % {"days": days, "hours": hours}
        return _("%(days)d d") % {"days": days}
    if hours:
        if minutes:
            return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}
        return _("%(hours)d h") % {"hours": hours}
    if minutes:
        return _("%(minutes)d min") % {"minutes": minutes}
    return _("%(seconds)d s") % {"seconds": seconds}


def _day(day: date) -> str:
    return formats.date_format(day, "DATE_FORMAT")


def _short_day(day: date) -> str:
    # Under a chart's columns, so short; translators choose the order ("n月j日").
    return formats.date_format(day, pgettext("date format on a chart's time axis", "M j"))


def _redeploy_count(count: int) -> str:
    return ngettext("%(count)d redeploy", "%(count)d redeploys", count) % {"count": count}


def _outcomes(counts: dashboard.RedeployCounts) -> str:
    values = {
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "running": counts.unfinished,
    }
    if counts.unfinished:
        return _("%(succeeded)d succeeded, %(failed)d failed, %(running)d still running") % values
    return _("%(succeeded)d succeeded, %(failed)d failed") % values


def _outcome_segments(counts: dashboard.RedeployCounts) -> list[charts.Segment]:
    return [
        charts.Segment(counts.succeeded, SUCCEEDED),
        charts.Segment(counts.failed, FAILED),
        charts.Segment(counts.unfinished, UNFINISHED),
    ]


def _outcome_legend() -> list[LegendItem]:
    return [
        LegendItem(SUCCEEDED, _("Succeeded")),
        LegendItem(FAILED, _("Failed")),
        LegendItem(UNFINISHED, _("Still running")),
    ]


def _counts_row(counts: dashboard.RedeployCounts) -> list[str]:
    return [
        str(counts.redeploys),
        str(counts.succeeded),
        str(counts.failed),
        format_rate(counts.success_rate),
    ]


def _stats(figures: dashboard.DashboardFigures) -> list[Stat]:
    redeploys, approval_times = figures.redeploys, figures.approval_times
    return [
        Stat(_("Redeploys"), str(redeploys.redeploys), _outcomes(redeploys)),
        Stat(
            _("Success rate"),
            format_rate(redeploys.success_rate),
            ngettext(
                "of %(count)d finished redeploy",
                "of %(count)d finished redeploys",
                redeploys.finished,
            )
            % {"count": redeploys.finished},
        ),
        Stat(
            _("Median time to approval"),
            format_duration(approval_times.median),
            ngettext(
                "over %(count)d approved ticket",
                "over %(count)d approved tickets",
                approval_times.count,
            )
            % {"count": approval_times.count},
        ),
        Stat(
            _("Tickets created"),
            str(figures.tickets_recent),
            _("%(count)d all time") % {"count": figures.tickets_total},
        ),
    ]


def _redeploys_panel(figures: dashboard.DashboardFigures) -> ChartPanel:
    total = figures.redeploys.redeploys
    bars = []
    for day in figures.days:
        tooltip = _("%(day)s: %(redeploys)s") % {
            "day": _day(day.day),
            "redeploys": _redeploy_count(day.redeploys),
        }
        if day.redeploys:
            tooltip = _("%(day)s: %(redeploys)s, %(outcomes)s") % {
                "day": _day(day.day),
                "redeploys": _redeploy_count(day.redeploys),
                "outcomes": _outcomes(day),
            }
        bars.append(
            charts.Bar(label=_short_day(day.day), segments=_outcome_segments(day), tooltip=tooltip)
        )
    return ChartPanel(
        key="redeploys-per-day",
        title=_("Redeploys per day"),
        svg=charts.column_chart(
            bars=bars,
            aria_label=_("Redeploys per day, %(first)s to %(last)s: %(redeploys)s in all")
            % {
                "first": _day(figures.first_day),
                "last": _day(figures.last_day),
                "redeploys": _redeploy_count(total),
            },
            label_every=LABEL_EVERY,
        )
        if total
        else None,
        empty_message=_("No redeploys in the last %(days)d days.") % {"days": len(figures.days)},
        headers=[_("Day"), _("Redeploys"), _("Succeeded"), _("Failed"), _("Success rate")],
        rows=[[_day(day.day), *_counts_row(day)] for day in figures.days],
        legend=_outcome_legend(),
        wide=True,
    )


def _success_rate_panel(figures: dashboard.DashboardFigures) -> ChartPanel:
    points = []
    for day in figures.days:
        rate = day.success_rate
        if rate is None:
            tooltip = _("%(day)s: no finished redeploys") % {"day": _day(day.day)}
        else:
            tooltip = _("%(day)s: %(rate)s succeeded (%(succeeded)d of %(finished)d finished)") % {
                "day": _day(day.day),
                "rate": format_rate(rate),
                "succeeded": day.succeeded,
                "finished": day.finished,
            }
        points.append(charts.Point(label=_short_day(day.day), value=rate, tooltip=tooltip))
    overall = figures.redeploys
    return ChartPanel(
        key="success-rate-per-day",
        title=_("Success rate per day"),
        svg=charts.line_chart(
            points=points,
            aria_label=_("Success rate per day, %(first)s to %(last)s: %(rate)s overall")
            % {
                "first": _day(figures.first_day),
                "last": _day(figures.last_day),
                "rate": format_rate(overall.success_rate),
            },
            css_class=RATE,
            label_every=LABEL_EVERY,
        )
        if overall.finished
        else None,
        empty_message=_("No finished redeploys in the last %(days)d days.")
        % {"days": len(figures.days)},
        headers=[_("Day"), _("Finished"), _("Succeeded"), _("Success rate")],
        rows=[
            [_day(day.day), str(day.finished), str(day.succeeded), format_rate(day.success_rate)]
            for day in figures.days
        ],
        wide=True,
    )


def _states_panel(figures: dashboard.DashboardFigures) -> ChartPanel:
    days = len(figures.days)
    bars = [
        charts.Bar(
            label=str(STATE_LABELS[state.state]),
            segments=[
                charts.Segment(state.recent, RECENT),
                charts.Segment(state.total - state.recent, EARLIER),
            ],
            tooltip=_("%(state)s: %(tickets)s, %(recent)d created in the last %(days)d days")
            % {
                "state": STATE_LABELS[state.state],
                "tickets": ngettext("%(count)d ticket", "%(count)d tickets", state.total)
                % {"count": state.total},
                "recent": state.recent,
                "days": days,
            },
        )
        for state in figures.states
    ]
    return ChartPanel(
        key="tickets-by-state",
        title=_("Tickets by state"),
        svg=charts.bar_list_chart(
            bars=bars,
            aria_label=_("Tickets by state: %(count)d tickets in all")
            % {"count": figures.tickets_total},
        )
        if figures.tickets_total
        else None,
        empty_message=_("No tickets yet."),
        headers=[
            _("State"),
            _("All time"),
            _("Created in the last %(days)d days") % {"days": days},
        ],
        rows=[
            [str(STATE_LABELS[state.state]), str(state.total), str(state.recent)]
            for state in figures.states
        ],
        legend=[
            LegendItem(RECENT, _("Created in the last %(days)d days") % {"days": days}),
            LegendItem(EARLIER, _("Earlier")),
        ],
    )


def _applications_panel(figures: dashboard.DashboardFigures) -> ChartPanel:
    applications = figures.top_applications
    bars = [
        charts.Bar(
            label=application.application_name,
            segments=_outcome_segments(application),
            tooltip=_("%(application)s: %(redeploys)s, %(outcomes)s")
            % {
                "application": application.application_name,
                "redeploys": _redeploy_count(application.redeploys),
                "outcomes": _outcomes(application),
            },
        )
        for application in applications
    ]
    return ChartPanel(
        key="top-applications",
        title=_("Top applications"),
        svg=charts.bar_list_chart(
            bars=bars,
            aria_label=ngettext(
                "The %(count)d application redeployed most in the last %(days)d days",
                "The %(count)d applications redeployed most in the last %(days)d days",
                len(applications),
            )
            % {"count": len(applications), "days": len(figures.days)},
        )
        if applications
        else None,
        empty_message=_("No redeploys in the last %(days)d days.") % {"days": len(figures.days)},
        headers=[
            _("Application"),
            _("Redeploys"),
            _("Succeeded"),
            _("Failed"),
            _("Success rate"),
        ],
        rows=[
            [application.application_name, *_counts_row(application)]
            for application in applications
        ],
        legend=_outcome_legend(),
    )


class DashboardView(LoginRequiredMixin, TemplateView):
    http_method_names = ["get", "head", "options"]
    template_name = "dashboard/dashboard.html"

    def dispatch(self, request, *args, **kwargs):
        # Anonymous users fall through to LoginRequiredMixin, which sends them to log in.
        if request.user.is_authenticated and not may_review_audit(user=request.user):
            raise PermissionRefused(_("Only reviewers and admins may see the dashboard."))
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        figures = dashboard.dashboard_figures()
        return super().get_context_data(
            figures=figures,
            time_zone=timezone.get_default_timezone_name(),
            stats=_stats(figures),
            panels=[
                _redeploys_panel(figures),
                _success_rate_panel(figures),
                _states_panel(figures),
                _applications_panel(figures),
            ],
            **kwargs,
        )


dashboard_page = DashboardView.as_view()
