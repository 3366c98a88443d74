from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import formats, timezone

from redeploy import charts, dashboard
from redeploy.dashboard_views import format_duration
from tests.factories import (
    RedeployOperationFactory,
    RedeployTargetFactory,
    TicketRecordFactory,
    UserFactory,
)
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
# "Now" for the figure tests: the window is 2024-05-01 .. 2024-05-30, Shanghai days.
NOW = datetime(2024, 5, 30, 12, 0, tzinfo=SHANGHAI)
State = Ticket.State


@pytest.fixture
def shanghai(settings):
    settings.TIME_ZONE = "Asia/Shanghai"


def at(year, month, day, hour=12, minute=0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def target(when: datetime | None, *, application: str = "web", **kwargs):
    return RedeployTargetFactory(
        operation=RedeployOperationFactory(application_name=application),
        operated_at=when,
        **kwargs,
    )


def figures(**kwargs) -> dashboard.DashboardFigures:
    return dashboard.dashboard_figures(now=NOW, **kwargs)


# --- redeploys per day and success rate ------------------------------------------------------


def test_every_day_of_the_window_is_there_days_without_redeploys_as_zero(shanghai):
    target(at(2024, 5, 2))
    result = figures()
    assert [day.day for day in result.days] == [
        date(2024, 5, 1) + timedelta(days=offset) for offset in range(30)
    ]
    assert (result.first_day, result.last_day) == (date(2024, 5, 1), date(2024, 5, 30))
    assert [day.redeploys for day in result.days] == [0, 1] + [0] * 28
    empty = result.days[0]
    assert (empty.redeploys, empty.succeeded, empty.failed, empty.success_rate) == (0, 0, 0, None)


def test_redeploys_count_on_their_day_in_the_configured_time_zone(shanghai):
    target(at(2024, 4, 30, 23, 59))  # the day before the window
    target(at(2024, 5, 1, 0, 0))  # the window's first instant
    # 16:30 UTC on 2 May is 00:30 on 3 May in Shanghai.
    target(datetime(2024, 5, 2, 16, 30, tzinfo=UTC))
    target(at(2024, 5, 30, 23, 59))  # the last minute of today
    target(None, state="PENDING", success=None)  # never operated: not a redeploy yet
    per_day = {day.day: day.redeploys for day in figures().days if day.redeploys}
    assert per_day == {date(2024, 5, 1): 1, date(2024, 5, 3): 1, date(2024, 5, 30): 1}


def test_outcomes_per_day_and_running_rollouts_left_out_of_the_rate(shanghai):
    for _ in range(2):
        target(at(2024, 5, 10, 9))
    target(at(2024, 5, 10, 15), failed=True)
    target(at(2024, 5, 10, 18), running=True)
    target(at(2024, 5, 11), failed=True)
    days = {day.day: day for day in figures().days}
    tenth = days[date(2024, 5, 10)]
    assert (tenth.redeploys, tenth.succeeded, tenth.failed, tenth.unfinished) == (4, 2, 1, 1)
    assert tenth.success_rate == Decimal("66.7")
    assert days[date(2024, 5, 11)].success_rate == Decimal("0.0")
    totals = figures().redeploys
    assert (totals.redeploys, totals.succeeded, totals.failed) == (5, 2, 2)
    assert totals.success_rate == Decimal("50.0")


@pytest.mark.parametrize(
    ("succeeded", "failed", "rate"),
    [
        (2, 1, Decimal("66.7")),
        (1, 2, Decimal("33.3")),
        (1, 15, Decimal("6.3")),  # 6.25: half up, not to even
        (1, 7, Decimal("12.5")),
        (3, 0, Decimal("100.0")),
        (0, 4, Decimal("0.0")),
        (0, 0, None),
    ],
)
def test_success_rate_is_a_percentage_rounded_half_up_to_one_decimal(succeeded, failed, rate):
    assert dashboard.success_rate(succeeded=succeeded, failed=failed) == rate


def test_a_window_of_another_length(shanghai):
    target(at(2024, 5, 24))
    target(at(2024, 5, 23))
    result = figures(days=7)
    assert result.first_day == date(2024, 5, 24)
    assert [day.redeploys for day in result.days] == [1, 0, 0, 0, 0, 0, 0]


# --- tickets by state ------------------------------------------------------------------------


def test_tickets_by_state_all_time_and_created_in_the_window(shanghai):
    TicketRecordFactory(state=State.COMPLETED, created_at=at(2024, 5, 1, 0, 0))
    TicketRecordFactory(state=State.COMPLETED, created_at=at(2024, 4, 30, 23, 59))
    TicketRecordFactory(state=State.COMPLETED, created_at=at(2023, 1, 1))
    TicketRecordFactory(state=State.REJECTED, created_at=at(2024, 5, 20))
    TicketRecordFactory(state=State.IN_APPROVAL, created_at=at(2024, 5, 30, 8))
    TicketRecordFactory(state=State.IN_APPROVAL, created_at=at(2024, 5, 29))
    result = figures()
    assert [(row.state, row.total, row.recent) for row in result.states] == [
        ("NEW", 0, 0),
        ("IN_APPROVAL", 2, 2),
        ("APPROVED", 0, 0),
        ("COMPLETED", 3, 1),
        ("REJECTED", 1, 1),
        ("CLOSED", 0, 0),
    ]
    assert (result.tickets_total, result.tickets_recent) == (6, 4)


# --- median time from submit to approval ------------------------------------------------------


def approved(hours: float, *, decided: datetime, state=State.APPROVED):
    return TicketRecordFactory(
        state=state, submitted_at=decided - timedelta(hours=hours), decided_at=decided
    )


def test_median_time_to_approval_over_an_odd_count(shanghai):
    approved(1, decided=at(2024, 5, 3))
    approved(4, decided=at(2024, 5, 4))
    approved(2.5, decided=at(2024, 5, 5), state=State.COMPLETED)
    times = figures().approval_times
    assert times.median == timedelta(hours=2.5)
    assert times.count == 3


def test_median_time_to_approval_over_an_even_count_and_only_approvals_in_the_window(shanghai):
    approved(1, decided=at(2024, 5, 3))
    approved(2, decided=at(2024, 5, 4))
    approved(4, decided=at(2024, 5, 4), state=State.COMPLETED)
    approved(10, decided=at(2024, 5, 1, 0, 30))  # submitted before the window, decided in it
    approved(50, decided=at(2024, 4, 30, 23))  # decided before the window
    TicketRecordFactory(  # rejected: a decision, but not an approval
        state=State.REJECTED, submitted_at=at(2024, 5, 6, 8), decided_at=at(2024, 5, 6, 20)
    )
    TicketRecordFactory(state=State.IN_APPROVAL, submitted_at=at(2024, 5, 6))
    times = figures().approval_times
    assert times.median == timedelta(hours=3)
    assert times.count == 4


def test_no_approvals_no_median(shanghai):
    TicketRecordFactory(state=State.IN_APPROVAL, submitted_at=at(2024, 5, 6))
    assert figures().approval_times == dashboard.ApprovalTimes(median=None, count=0)


# --- top applications ------------------------------------------------------------------------


def test_top_ten_applications_by_redeploys_ties_by_name(shanghai):
    for index in range(12):
        for _ in range(index % 4 + 1):
            target(at(2024, 5, 10), application=f"app-{index:02d}")
    target(at(2024, 5, 10), application="app-00", failed=True)
    for _ in range(9):
        target(at(2024, 4, 20), application="old-favourite")  # outside the window
    top = figures().top_applications
    assert [(app.application_name, app.redeploys) for app in top] == [
        ("app-03", 4),
        ("app-07", 4),
        ("app-11", 4),
        ("app-02", 3),
        ("app-06", 3),
        ("app-10", 3),
        ("app-00", 2),
        ("app-01", 2),
        ("app-05", 2),
        ("app-09", 2),
    ]
    assert (top[6].succeeded, top[6].failed, top[6].success_rate) == (1, 1, Decimal("50.0"))


def test_a_target_restarted_in_several_clusters_counts_once_per_cluster(shanghai):
    operation = RedeployOperationFactory(application_name="shop")
    for cluster in ("east", "west"):
        RedeployTargetFactory(operation=operation, cluster_name=cluster, operated_at=at(2024, 5, 9))
    assert [(app.application_name, app.redeploys) for app in figures().top_applications] == [
        ("shop", 2)
    ]


# --- cost ------------------------------------------------------------------------------------


def test_the_figures_take_four_queries_whatever_the_data(shanghai, django_assert_num_queries):
    with django_assert_num_queries(4):
        assert figures().is_empty
    operation = RedeployOperationFactory(application_name="shop")
    for offset in range(60):
        RedeployTargetFactory(operation=operation, operated_at=NOW - timedelta(days=offset))
    for offset in range(20):
        approved(offset + 1, decided=NOW - timedelta(days=offset))
    with django_assert_num_queries(4):
        result = figures()
    assert not result.is_empty
    assert result.redeploys.redeploys == 30


# --- charts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (10, [0, 5, 10]),
        (37, [0, 10, 20, 30, 40]),
        (1234, [0, 500, 1000, 1500]),
    ],
)
def test_value_ticks_are_round_whole_steps(maximum, ticks):
    assert charts.value_ticks(maximum) == ticks


def test_a_chart_is_an_accessible_image_with_a_tooltip_per_bar_and_escaped_text():
    bars = [
        charts.Bar(label="<b>1</b>", segments=[charts.Segment(2, "s")], tooltip='a "x" & <y>'),
        charts.Bar(label="2", segments=[charts.Segment(0, "s")], tooltip="0 of it"),
    ]
    for svg in (
        charts.column_chart(bars=bars, aria_label="Per <day>"),
        charts.bar_list_chart(bars=bars, aria_label="Per <day>"),
    ):
        assert svg.startswith('<svg class="chart chart-')
        assert 'role="img" aria-label="Per &lt;day&gt;"' in svg
        assert "<title>a &quot;x&quot; &amp; &lt;y&gt;</title>" in svg
        assert "<title>0 of it</title>" in svg
        assert "&lt;b&gt;1&lt;/b&gt;" in svg
        assert "<b>" not in svg
        assert svg.count('<g class="chart-item">') == 2


def test_a_line_breaks_where_a_point_has_no_value():
    points = [
        charts.Point(label=str(index), value=value, tooltip=f"tip {index}")
        for index, value in enumerate([Decimal("50.0"), Decimal("100.0"), None, Decimal("0.0")])
    ]
    svg = charts.line_chart(points=points, aria_label="Rate", css_class="series-rate")
    # 50 -> 100 joined; the gap; 0 alone.
    assert svg.count('<line class="chart-line series-rate"') == 1
    assert svg.count("<circle") == 3
    assert all(f"<title>tip {index}</title>" in svg for index in range(4))


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(seconds=42), "42 s"),
        (timedelta(minutes=5, seconds=29), "5 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(hours=2, minutes=30), "2 h 30 min"),
        (timedelta(days=3), "3 d"),
        (timedelta(days=1, hours=4, minutes=59), "1 d 4 h"),
        (None, "—"),
    ],
)
def test_durations_read_short(duration, text):
    assert format_duration(duration) == text


# --- the page --------------------------------------------------------------------------------


def dashboard_url() -> str:
    return reverse("redeploy:dashboard")


def long_date(day) -> str:
    return formats.date_format(day, "DATE_FORMAT")


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(dashboard_url())
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert "next=/dashboard/" in response.url


@pytest.mark.parametrize(
    "user_kwargs", [{"groups": ["Requesters"]}, {"groups": ["Approvers"], "is_staff": True}]
)
def test_requesters_and_approvers_are_refused_with_the_error_page(client, user_kwargs):
    client.force_login(UserFactory(**user_kwargs))
    response = client.get(dashboard_url())
    assert response.status_code == 403
    assert "Only reviewers and admins may see the dashboard." in response.content.decode()
    assert "error.html" in [template.name for template in response.templates]


def test_reviewers_group_may_see_it(client, reviewer):
    assert client.get(dashboard_url()).status_code == 200


def test_audit_view_permission_may_see_it(client):
    client.force_login(UserFactory(permissions=["audit.view_auditevent"]))
    assert client.get(dashboard_url()).status_code == 200


def test_superusers_may_see_it(client):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    assert client.get(dashboard_url()).status_code == 200


def test_the_page_is_read_only(client, reviewer):
    for method in (client.post, client.put, client.patch, client.delete):
        assert method(dashboard_url()).status_code == 405


def test_without_data_the_page_says_so_and_draws_nothing(client, reviewer):
    content = client.get(dashboard_url()).content.decode()
    assert "Nothing to show yet" in content
    assert "<svg" not in content


def test_with_tickets_but_no_redeploys_each_card_says_what_is_missing(client, reviewer):
    TicketRecordFactory(state=State.IN_APPROVAL)
    content = client.get(dashboard_url()).content.decode()
    assert "Nothing to show yet" not in content
    assert content.count('role="img"') == 1  # tickets by state
    assert content.count("No redeploys in the last 30 days.") == 2
    assert "No finished redeploys in the last 30 days." in content


def test_cards_and_charts_show_the_numbers(client, reviewer):
    now = timezone.now()
    today, yesterday = timezone.localdate(now), timezone.localdate(now) - timedelta(days=1)
    for _ in range(2):
        target(now, application="shop")
    target(now, application="shop", failed=True)
    target(now, application="web", running=True)
    TicketRecordFactory(
        state=State.APPROVED,
        submitted_at=now - timedelta(hours=2, minutes=30),
        decided_at=now,
    )
    response = client.get(dashboard_url())
    content = response.content.decode()

    stats = {stat.label: (stat.value, stat.note) for stat in response.context["stats"]}
    assert stats == {
        "Redeploys": ("4", "2 succeeded, 1 failed, 1 still running"),
        "Success rate": ("66.7%", "of 3 finished redeploys"),
        "Median time to approval": ("2 h 30 min", "over 1 approved ticket"),
        "Tickets created": ("1", "1 all time"),
    }
    assert '<p class="dash-stat-value">66.7%</p>' in content
    assert content.count('role="img"') == 4
    # Each bar and point carries its numbers as a tooltip, empty days too.
    assert (
        f"<title>{long_date(today)}: 4 redeploys, 2 succeeded, 1 failed, 1 still running</title>"
        in content
    )
    assert f"<title>{long_date(yesterday)}: 0 redeploys</title>" in content
    assert f"<title>{long_date(today)}: 66.7% succeeded (2 of 3 finished)</title>" in content
    assert f"<title>{long_date(yesterday)}: no finished redeploys</title>" in content
    assert "<title>shop: 3 redeploys, 2 succeeded, 1 failed</title>" in content
    assert "<title>In approval: 0 tickets, 0 created in the last 30 days</title>" in content
    assert "<title>Approved: 1 ticket, 1 created in the last 30 days</title>" in content
    # And the same numbers as tables, for screen readers and for copying.
    assert content.count('<details class="dash-numbers">') == 4
    assert f'<th scope="row">{long_date(today)}</th><td>4</td><td>2</td><td>1</td>' in content
    assert '<th scope="row">shop</th><td>3</td><td>2</td><td>1</td><td>66.7%</td>' in content


def test_application_names_are_escaped_everywhere(client, reviewer):
    name = '<script>alert("x")</script>&co'
    target(timezone.now(), application=name)
    content = client.get(dashboard_url()).content.decode()
    assert "<script>alert" not in content
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;co"
    assert f"<title>{escaped}: 1 redeploy, 1 succeeded, 0 failed</title>" in content
    assert f'<th scope="row">{escaped}</th>' in content
    assert "&amp;lt;" not in content  # escaped once, not twice


def test_the_page_costs_the_same_queries_with_much_more_data(client, reviewer):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(dashboard_url()).status_code == 200
        return len(captured)

    now = timezone.now()
    target(now)
    TicketRecordFactory(state=State.APPROVED, submitted_at=now, decided_at=now)
    few = queries()
    operations = [RedeployOperationFactory(application_name=f"app-{n}") for n in range(15)]
    for offset in range(90):
        RedeployTargetFactory(
            operation=operations[offset % 15],
            operated_at=now - timedelta(days=offset % 40),
            success=offset % 3 != 0,
        )
    for offset in range(40):
        TicketRecordFactory(
            state=[State.APPROVED, State.COMPLETED, State.REJECTED][offset % 3],
            submitted_at=now - timedelta(days=offset % 35, hours=3),
            decided_at=now - timedelta(days=offset % 35),
        )
    assert queries() == few
