import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cratos.audit import selectors as audit_selectors
from cratos.audit.models import AuditEvent
from cratos.audit.tables import AuditEventTable, AuditTrailTable, operation_url
from tests.factories import AuditEventFactory, TicketFactory, UserFactory

pytestmark = pytest.mark.django_db

UTC = UTC


def audit_url() -> str:
    return reverse("audit:events")


def move(events, when: datetime) -> None:
    # created_at is auto_now_add; tests move events in time with a queryset update, past the
    # append-only trigger (inside the test's transaction, so it is back in force afterwards).
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE redeploy_auditevent DISABLE TRIGGER audit_append_only")
        AuditEvent.objects.filter(pk__in=[event.pk for event in events]).update(created_at=when)
        cursor.execute("ALTER TABLE redeploy_auditevent ENABLE TRIGGER audit_append_only")


def shown(response) -> list[int]:
    return [event.pk for event in response.context["table"].keyset_page.events]


def body(response) -> str:
    return b"".join(response.streaming_content).decode()


# --- who may read it ------------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(audit_url())
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert "next=/audit/" in response.url


def test_requester_is_refused_with_the_error_page(client):
    client.force_login(UserFactory(groups=["Requesters"]))
    for params in ({}, {"_export": "csv"}):
        response = client.get(audit_url(), params)
        assert response.status_code == 403
        assert "Only reviewers may read the audit log." in response.content.decode()
        assert "error.html" in [template.name for template in response.templates]


def test_reviewers_group_may_read(client, reviewer):
    assert client.get(audit_url()).status_code == 200


def test_view_permission_alone_may_read(client):
    client.force_login(UserFactory(permissions=["audit.view_auditevent"]))
    assert client.get(audit_url()).status_code == 200


def test_the_page_is_read_only(client, reviewer):
    AuditEventFactory()
    for method in (client.post, client.put, client.patch, client.delete):
        assert method(audit_url()).status_code == 405
    assert AuditEvent.objects.count() == 1
    page = client.get(audit_url()).content.decode()
    assert '<form method="get" class="audit-filters"' in page
    assert 'action="/audit/' not in page


# --- filters and search ---------------------------------------------------------------------


@pytest.fixture
def distinct_event():
    """One event that differs from the others in every filtered column."""
    AuditEventFactory.create_batch(3)
    return AuditEventFactory(
        actor_username="alice",
        action=AuditEvent.Action.TICKET_APPROVED,
        outcome=AuditEvent.Outcome.FAILURE,
        application_name="shop",
        cluster_name="east",
        namespace="payments",
        ticket_no="20240102000007",
        message="Rollout of shop FAILED: progress deadline exceeded",
    )


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("actor", "alice"),
        ("action", "ticket.approved"),
        ("outcome", "FAILURE"),
        ("application", "shop"),
        ("cluster", "east"),
        ("namespace", "payments"),
        ("ticket_no", "20240102000007"),
        ("q", "failed: PROGRESS"),
    ],
)
def test_each_filter_selects_its_events(client, reviewer, distinct_event, param, value):
    response = client.get(audit_url(), {param: value})
    assert response.status_code == 200
    assert shown(response) == [distinct_event.pk]


def test_filters_combine(client, reviewer, distinct_event):
    assert shown(client.get(audit_url(), {"actor": "alice", "outcome": "FAILURE"})) == [
        distinct_event.pk
    ]
    assert shown(client.get(audit_url(), {"actor": "alice", "outcome": "SUCCESS"})) == []


def test_filter_values_are_exact_not_partial(client, reviewer, distinct_event):
    assert shown(client.get(audit_url(), {"application": "sho"})) == []


def test_date_range_includes_both_days(client, reviewer):
    old, first_day, last_day, new = AuditEventFactory.create_batch(4)
    move([old], datetime(2024, 1, 10, 23, 59, tzinfo=UTC))
    move([first_day], datetime(2024, 1, 11, 0, 0, tzinfo=UTC))
    move([last_day], datetime(2024, 1, 15, 23, 59, 59, tzinfo=UTC))
    move([new], datetime(2024, 1, 16, 0, 0, tzinfo=UTC))
    response = client.get(
        audit_url(), {"created_after": "2024-01-11", "created_before": "2024-01-15"}
    )
    assert shown(response) == [last_day.pk, first_day.pk]
    assert shown(client.get(audit_url(), {"created_after": "2024-01-16"})) == [new.pk]
    assert shown(client.get(audit_url(), {"created_before": "2024-01-10"})) == [old.pk]


def test_an_invalid_filter_shows_its_error_and_no_rows(client, reviewer):
    AuditEventFactory()
    response = client.get(audit_url(), {"created_after": "last tuesday", "action": "bogus"})
    assert response.status_code == 200
    assert shown(response) == []
    assert response.context["filter"].errors.keys() == {"created_after", "action"}
    assert 'class="field-error"' in response.content.decode()


# --- sorting and keyset pages ---------------------------------------------------------------


def test_newest_first_by_default(client, reviewer):
    older, newer = AuditEventFactory.create_batch(2)
    move([older], datetime(2024, 1, 1, tzinfo=UTC))
    response = client.get(audit_url())
    assert shown(response) == [newer.pk, older.pk]


def test_sort_by_actor_keeps_newest_first_within_an_actor(client, reviewer):
    bob = AuditEventFactory(actor_username="bob")
    alice_old = AuditEventFactory(actor_username="alice")
    alice_new = AuditEventFactory(actor_username="alice")
    move([alice_old], datetime(2024, 1, 1, tzinfo=UTC))
    assert shown(client.get(audit_url(), {"sort": "actor"})) == [
        alice_new.pk,
        alice_old.pk,
        bob.pk,
    ]
    # Descending reads the same index backwards: z-a, then oldest first.
    assert shown(client.get(audit_url(), {"sort": "-actor"})) == [
        bob.pk,
        alice_old.pk,
        alice_new.pk,
    ]


def test_unknown_sort_falls_back_to_newest_first(client, reviewer):
    events = AuditEventFactory.create_batch(3)
    response = client.get(audit_url(), {"sort": "message"})
    assert response.context["table"].order_by == ("-time",)
    assert shown(response) == [event.pk for event in reversed(events)]


@pytest.mark.parametrize("sort", ["web..api", "-actor.username", "--time", ""])
def test_a_malformed_sort_falls_back_quietly(recwarn, sort):
    assert AuditEventTable.resolve_sort(sort) == AuditEventTable.resolve_sort(None)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


@pytest.fixture
def sixty_events_with_ties():
    """60 events; groups of 7 share a timestamp so (created_at) alone would not order them."""
    actors, actions = ["dave", "alice", "carol", "bob"], list(AuditEvent.Action)[:5]
    events = AuditEvent.objects.bulk_create(
        AuditEventFactory.build(
            actor_username=actors[n % 4],
            action=actions[n % 5],
            outcome=list(AuditEvent.Outcome)[n % 3],
            application_name=f"app-{n % 6}",
            cluster_name=f"cluster-{n % 2}",
        )
        for n in range(60)
    )
    start = datetime(2024, 3, 1, tzinfo=UTC)
    for group in range(0, 60, 7):
        move(events[group : group + 7], start + timedelta(minutes=group))
    return events


@pytest.mark.parametrize(
    "sort",
    ["-time", "time", "actor", "-actor", "action", "-action", "outcome", "-outcome",
     "application", "-application", "cluster", "-cluster"],
)  # fmt: skip
def test_cursor_pages_walk_every_event_once_both_ways(
    client, reviewer, sixty_events_with_ties, sort
):
    _, ordering = AuditEventTable.resolve_sort(sort)
    expected = list(AuditEvent.objects.order_by(*ordering).values_list("pk", flat=True))

    pages, params = [], {"sort": sort, "per_page": 25}
    while True:
        page = client.get(audit_url(), params).context["table"].keyset_page
        pages.append([event.pk for event in page.events])
        if not page.has_next:
            break
        params = {"sort": sort, "per_page": 25, "after": page.next_cursor}
    assert [len(rows) for rows in pages] == [25, 25, 10]
    assert [pk for rows in pages for pk in rows] == expected

    back = []
    while page.has_previous:
        page = (
            client.get(audit_url(), {"sort": sort, "per_page": 25, "before": page.previous_cursor})
            .context["table"]
            .keyset_page
        )
        back.append([event.pk for event in page.events])
    assert back == pages[-2::-1]


def test_a_bad_or_foreign_cursor_gives_the_first_page(client, reviewer, sixty_events_with_ties):
    first = shown(client.get(audit_url(), {"per_page": 25}))
    actor_cursor = (
        client.get(audit_url(), {"sort": "actor", "per_page": 25})
        .context["table"]
        .keyset_page.next_cursor
    )
    for cursor in ("garbage", "e30", actor_cursor, "W1siLXRpbWUiXV0"):
        assert shown(client.get(audit_url(), {"per_page": 25, "after": cursor})) == first


def test_pager_links_carry_the_filters_and_cursor(client, reviewer, sixty_events_with_ties):
    response = client.get(audit_url(), {"per_page": 25, "cluster": "cluster-1"})
    page = response.context["table"].keyset_page
    content = response.content.decode()
    assert page.has_next and not page.has_previous
    assert f"after={page.next_cursor}" in content
    assert "cluster=cluster-1" in content.split('rel="next"')[0].rsplit("<a", 1)[1]


# --- rows -----------------------------------------------------------------------------------


def test_html_in_events_is_escaped(client, reviewer):
    AuditEventFactory(
        actor_username="<img src=x onerror=alert(1)>",
        message='<script>alert("audit")</script>',
        application_name="<b>web</b>",
    )
    content = client.get(audit_url()).content.decode()
    assert "<script>alert" not in content
    assert "&lt;script&gt;alert(&quot;audit&quot;)&lt;/script&gt;" in content
    assert "<img src=x" not in content
    assert "<b>web</b>" not in content


def test_rows_link_their_ticket_and_operation(client, reviewer):
    operation_id = uuid.uuid4()
    AuditEventFactory(ticket_no="20240102000042", operation_id=operation_id)
    content = client.get(audit_url()).content.decode()
    assert 'href="/tickets/20240102000042/"' in content
    assert str(operation_id)[:8] in content
    url = operation_url(operation_id)
    if url is not None:
        assert f'href="{url}"' in content


# --- export ---------------------------------------------------------------------------------


def test_csv_export_holds_the_filtered_set(client, reviewer, distinct_event):
    AuditEventFactory(actor_username="alice", message='=HYPERLINK("http://evil")')
    response = client.get(audit_url(), {"actor": "alice", "_export": "csv", "after": "x"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="audit-events.csv"'
    assert response["X-Export-Truncated"] == "false"
    rows = list(csv.reader(io.StringIO(body(response))))
    assert rows[0] == [
        "Time", "Actor", "Action", "Outcome", "Ticket", "Application", "Cluster", "Namespace",
        "Deployment", "Message", "Redeploy operation", "Generation", "Resource version",
        "Request IP", "Task id",
    ]  # fmt: skip
    assert len(rows) == 3
    assert [row[1] for row in rows[1:]] == ["alice", "alice"]
    # A cell a spreadsheet would run as a formula is defused.
    assert rows[1][9] == '\'=HYPERLINK("http://evil")'
    assert rows[2][2:8] == [
        "ticket.approved", "FAILURE", "20240102000007", "shop", "east", "payments",
    ]  # fmt: skip
    assert rows[2][0] == distinct_event.created_at.isoformat()


def test_json_export_holds_the_filtered_set(client, reviewer, distinct_event):
    response = client.get(audit_url(), {"outcome": "FAILURE", "_export": "json"})
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="audit-events.json"'
    data = json.loads(body(response))
    assert data == [
        {
            "time": distinct_event.created_at.isoformat(),
            "actor": "alice",
            "action": "ticket.approved",
            "outcome": "FAILURE",
            "ticket": "20240102000007",
            "application": "shop",
            "cluster": "east",
            "namespace": "payments",
            "deployment": "web",
            "message": "Rollout of shop FAILED: progress deadline exceeded",
            "operation": None,
            "generation": None,
            "resource_version": None,
            "request_ip": None,
            "celery_task_id": None,
        }
    ]


def test_export_follows_the_sort(client, reviewer):
    AuditEventFactory(actor_username="bob")
    AuditEventFactory(actor_username="alice")
    data = json.loads(body(client.get(audit_url(), {"sort": "actor", "_export": "json"})))
    assert [row["actor"] for row in data] == ["alice", "bob"]


def test_export_is_capped_and_says_so(client, reviewer, monkeypatch):
    monkeypatch.setattr(audit_selectors, "EXPORT_MAX_ROWS", 2)
    AuditEventFactory.create_batch(3)
    response = client.get(audit_url(), {"_export": "json"})
    assert response["X-Export-Truncated"] == "true"
    assert response["X-Export-Row-Limit"] == "2"
    assert len(json.loads(body(response))) == 2


def test_export_refuses_bad_filters_and_formats(client, reviewer):
    AuditEventFactory()
    response = client.get(audit_url(), {"_export": "csv", "created_after": "soon"})
    assert response.status_code == 400
    assert "Fix the filters before exporting" in response.content.decode()
    assert client.get(audit_url(), {"_export": "xlsx"}).status_code == 400


# --- constant cost --------------------------------------------------------------------------


def _page_queries(client, params) -> tuple[list[str], object]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(audit_url(), params)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries], response


def _bulk_events(count: int) -> None:
    # Foreign keys set on purpose: a table that followed them would issue a query per row.
    AuditEvent.objects.bulk_create(
        AuditEventFactory.build(
            actor_username=f"user{n % 7}",
            ticket_id=n + 1,
            operation_id=uuid.uuid4(),
            message=f"event {n}",
        )
        for n in range(count)
    )


def test_query_count_is_constant_for_any_size_and_page(client, reviewer):
    _bulk_events(30)
    small, _ = _page_queries(client, {})

    _bulk_events(270)
    first, response = _page_queries(client, {})
    cursor = response.context["table"].keyset_page.next_cursor
    second, response = _page_queries(client, {"after": cursor})
    cursor = response.context["table"].keyset_page.next_cursor
    third, response = _page_queries(client, {"after": cursor, "sort": "-time"})
    back, _ = _page_queries(
        client, {"before": response.context["table"].keyset_page.previous_cursor}
    )
    filtered, response = _page_queries(client, {"actor": "user3", "q": "event", "sort": "actor"})
    assert len(response.context["table"].keyset_page.events) == 43

    assert len(small) == len(first) == len(second) == len(third) == len(back) == len(filtered)
    # Session, user, permissions, the menu's role flags and the one audit query.
    assert len(first) <= 7, first
    assert not any("COUNT(" in sql.upper() for sql in first + second + filtered)
    # Exactly one query reads the audit table, with a LIMIT.
    audit_queries = [sql for sql in second if "redeploy_auditevent" in sql]
    assert len(audit_queries) == 1 and "LIMIT 51" in audit_queries[0]


# --- the trail of one ticket or application -------------------------------------------------


def test_ticket_trail_lists_its_own_events_newest_first():
    ticket = TicketFactory()
    AuditEventFactory(ticket_no="someone-else")
    mine = list(
        AuditEvent.objects.filter(ticket_no=ticket.ticket_no).order_by("-created_at", "-id")
    )
    assert mine  # the services recorded the creation
    trail = audit_selectors.audit_events_for_ticket(ticket=ticket)
    assert trail.events == mine
    assert not trail.has_more
    assert trail.audit_query == f"ticket_no={ticket.ticket_no}"


def test_application_trail_is_limited_and_says_more_exist():
    AuditEventFactory.create_batch(22, application_name="shop")
    AuditEventFactory(application_name="web")
    trail = audit_selectors.audit_events_for_application(application_name="shop")
    assert len(trail.events) == audit_selectors.TRAIL_LIMIT
    assert {event.application_name for event in trail.events} == {"shop"}
    assert trail.has_more
    assert trail.audit_query == "application=shop"


@pytest.mark.parametrize("is_reviewer", [True, False])
def test_trail_include_renders_rows_and_links_reviewers_to_the_log(is_reviewer):
    AuditEventFactory(application_name="shop", message="<i>restarted</i>", ticket_no="T-9")
    user = UserFactory(
        groups=["Reviewers"] if is_reviewer else [],
        permissions=["audit.view_auditevent"] if is_reviewer else [],
    )
    request = RequestFactory().get("/applications/shop/")
    request.user = user
    table = AuditTrailTable(
        audit_selectors.audit_events_for_application(application_name="shop"),
        exclude=("application",),
    )
    html = render_to_string("audit/_trail.html", {"trail": table}, request=request)
    assert "<th" in html and ">Application<" not in html.replace(" ", "").replace("\n", "")
    assert "&lt;i&gt;restarted&lt;/i&gt;" in html
    assert 'href="/tickets/T-9/"' in html
    assert "?sort=" not in html  # a trail is not sortable
    assert ('href="/audit/?application=shop"' in html) is is_reviewer
