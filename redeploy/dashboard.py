"""Figures behind the reviewers' dashboard: four aggregate queries, whatever the data's size.

Each figure is one GROUP BY (or, for the median, one narrow column fetch over the window) in
plain ORM terms, so PostgreSQL and the demo's SQLite give the same answers. Days are calendar
days in settings.TIME_ZONE: a redeploy at 01:00 Shanghai time counts on that Shanghai day.
"""

import statistics
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from tickets.models import Ticket

from .models import RedeployTarget

WINDOW_DAYS = 30
TOP_APPLICATIONS = 10
# Tickets whose approval time counts: approved, whether or not their redeploys are done yet.
APPROVED_STATES = (Ticket.State.APPROVED, Ticket.State.COMPLETED)


def success_rate(*, succeeded: int, failed: int) -> Decimal | None:
    """The succeeded share of the finished redeploys in percent, one decimal, rounded half up.

    None when nothing finished: a rollout still running has neither succeeded nor failed yet.
    """
    finished = succeeded + failed
    if not finished:
        return None
    return (Decimal(100 * succeeded) / finished).quantize(Decimal("0.1"), ROUND_HALF_UP)


@dataclass(frozen=True, kw_only=True)
class RedeployCounts:
    """Redeploy records (one Deployment restarted in one cluster) and how they ended."""

    redeploys: int
    succeeded: int
    failed: int

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def unfinished(self) -> int:
        return self.redeploys - self.finished

    @property
    def success_rate(self) -> Decimal | None:
        return success_rate(succeeded=self.succeeded, failed=self.failed)


@dataclass(frozen=True, kw_only=True)
class DayFigures(RedeployCounts):
    day: date


@dataclass(frozen=True, kw_only=True)
class ApplicationFigures(RedeployCounts):
    application_name: str


@dataclass(frozen=True)
class StateFigures:
    state: str
    total: int
    # Created within the window.
    recent: int


@dataclass(frozen=True)
class ApprovalTimes:
    """From submit to final approval, over the tickets approved within the window."""

    median: timedelta | None
    count: int


@dataclass(frozen=True)
class DashboardFigures:
    first_day: date
    last_day: date
    days: list[DayFigures]
    states: list[StateFigures]
    approval_times: ApprovalTimes
    top_applications: list[ApplicationFigures]

    @property
    def redeploys(self) -> RedeployCounts:
        return RedeployCounts(
            redeploys=sum(day.redeploys for day in self.days),
            succeeded=sum(day.succeeded for day in self.days),
            failed=sum(day.failed for day in self.days),
        )

    @property
    def tickets_total(self) -> int:
        return sum(state.total for state in self.states)

    @property
    def tickets_recent(self) -> int:
        return sum(state.recent for state in self.states)

    @property
    def is_empty(self) -> bool:
        return not self.tickets_total and not any(day.redeploys for day in self.days)


_COUNTS = {
    "redeploys": Count("pk"),
    "succeeded": Count("pk", filter=Q(success=True)),
    "failed": Count("pk", filter=Q(success=False)),
}


def _midnight(day: date, zone) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def dashboard_figures(*, now: datetime | None = None, days: int = WINDOW_DAYS) -> DashboardFigures:
    """The last `days` calendar days, today included, in settings.TIME_ZONE."""
    zone = timezone.get_default_timezone()
    last_day = timezone.localtime(now or timezone.now(), zone).date()
    first_day = last_day - timedelta(days=days - 1)
    start, end = _midnight(first_day, zone), _midnight(last_day + timedelta(days=1), zone)

    # A redeploy counts on the day it was operated; one still PENDING has no operated_at yet.
    targets = RedeployTarget.objects.filter(operated_at__gte=start, operated_at__lt=end)
    per_day = {
        row["day"]: row
        for row in targets.annotate(day=TruncDate("operated_at", tzinfo=zone))
        .values("day")
        .annotate(**_COUNTS)
        .order_by("day")
    }
    day_figures = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        row = per_day.get(day, {})
        day_figures.append(
            DayFigures(
                day=day,
                redeploys=row.get("redeploys", 0),
                succeeded=row.get("succeeded", 0),
                failed=row.get("failed", 0),
            )
        )

    top_applications = [
        ApplicationFigures(
            application_name=row["operation__application_name"],
            redeploys=row["redeploys"],
            succeeded=row["succeeded"],
            failed=row["failed"],
        )
        for row in targets.values("operation__application_name")
        .annotate(**_COUNTS)
        .order_by("-redeploys", "operation__application_name")[:TOP_APPLICATIONS]
    ]

    by_state = {
        row["state"]: row
        for row in Ticket.objects.order_by()
        .values("state")
        .annotate(
            total=Count("pk"),
            recent=Count("pk", filter=Q(created_at__gte=start, created_at__lt=end)),
        )
    }
    states = [
        StateFigures(
            state=state,
            total=by_state.get(state, {}).get("total", 0),
            recent=by_state.get(state, {}).get("recent", 0),
        )
        for state in Ticket.State.values
    ]

    # Neither database gives a portable median: fetch the window's pairs (a month of tickets)
    # and take it in Python, one code path for both.
    approved = Ticket.objects.order_by().filter(
        state__in=APPROVED_STATES,
        submitted_at__isnull=False,
        decided_at__gte=start,
        decided_at__lt=end,
    )
    durations = [
        (decided_at - submitted_at).total_seconds()
        for submitted_at, decided_at in approved.values_list("submitted_at", "decided_at")
    ]
    approval_times = ApprovalTimes(
        median=timedelta(seconds=statistics.median(durations)) if durations else None,
        count=len(durations),
    )

    return DashboardFigures(
        first_day=first_day,
        last_day=last_day,
        days=day_figures,
        states=states,
        approval_times=approval_times,
        top_applications=top_applications,
    )
