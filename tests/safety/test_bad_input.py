"""Bad input, property-based: every field of every form and API endpoint gets names that are not
DNS-1123, 10,000-character strings, unicode (RTL, emoji, NUL, lone surrogates where the transport
carries them), HTML/JS, missing and extra fields and wrong types. Never a 500: a clear 4xx message,
or the page again with the error (a NUL anywhere: the edge's 400, cratos.validation); and whatever
is shown back is escaped.

tests/test_api_errors.py throws arbitrary JSON bodies at the ticket API; these tests aim each
field with values made for it and also read the pages that show what was accepted.
"""

import base64
import itertools
import json
import re
from urllib.parse import quote_plus

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from cratos.roles import ensure_roles
from tests.factories import (
    ApplicationFactory,
    AuditEventFactory,
    BindingFactory,
    ClusterFactory,
    TicketFactory,
    UserFactory,
)
from tickets import selectors, services
from tickets.models import Ticket, TicketEntry

pytestmark = pytest.mark.django_db

# Bounded: generated examples only, no shrinking (a failure reports the example as found), so
# the file runs in well under a minute, failing or not.
EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- values -----------------------------------------------------------------------------------

PAYLOADS = [
    '<script>alert("xss")</script>',
    '"><img src=x onerror=alert(1)>',
    "'><svg/onload=alert(1)>",
    "</textarea><script>alert(1)</script>",
]
# What a payload looks like when it reached the HTML unescaped.
RAW_MARKUP = ("<script>alert(", "<img src=x onerror", "<svg/onload", "</textarea><script>")
SPECIAL = [
    "",
    " ",
    "\x00",
    "web\x00",
    "\u202eevil\u202c",  # right-to-left override
    "مرحبا بالعالم",
    "😀🚀",
    "\ud800",  # a lone surrogate
    "Shop_1",
    "-web",
    "web-",
    "web..api",
    "web/../x",
    "a" * 64,
    "a." * 130,
    "\r\n",
    "{{ 7|add:7 }}{% now 'Y' %}",
    "web",
    "shop",
]
LONG = ["x" * 10_000, "<" * 10_000, "é" * 10_000, "😀" * 10_000, "\u202e" * 10_000]

VALID_TICKET = {"workOrderKey": "APPLICATION_REDEPLOY", "applications": ["web"], "reason": "r"}
VALID_REDEPLOY = {"applicationName": "web", "namespace": "shop", "deploymentName": "web"}
VALID_FORM = {"application": "web", "namespace": "shop", "deployment": "web", "confirmed": "1"}

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(SPECIAL + PAYLOADS + LONG),
    st.builds(
        lambda before, payload, after: before + payload + after,
        st.text(max_size=8),
        st.sampled_from(PAYLOADS),
        st.text(max_size=8),
    ),
)
wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(texts, max_size=3),
    st.dictionaries(texts, texts, max_size=3),
)
json_values = texts | wrong_types
extra_fields = st.dictionaries(
    st.sampled_from(["extra", "state", "admin", "ticketNo", "__proto__", "\ud800", ""]),
    json_values,
    max_size=2,
)


def json_body(fields: dict) -> st.SearchStrategy:
    """Any of the fields (each may be missing), maybe with fields nobody asked for."""
    return st.builds(
        lambda given_fields, extra: {**extra, **given_fields},
        st.fixed_dictionaries({}, optional=fields),
        extra_fields,
    )


def encoded(value: str) -> str:
    # A lone surrogate cannot be UTF-8: it goes out as the invalid bytes a careless client sends.
    return quote_plus(value.encode("utf-8", "surrogatepass"))


def received(value: str) -> str:
    """The text a page receives for `value` (invalid bytes decode to U+FFFD)."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", errors="replace")


def form_body(data: dict) -> str:
    """application/x-www-form-urlencoded, lists as repeated keys."""
    return "&".join(
        f"{encoded(key)}={encoded(value)}"
        for key, values in data.items()
        for value in (values if isinstance(values, list) else [values])
    )


def post_form(client, url: str, data: dict, **extra):
    return client.post(
        url, data=form_body(data), content_type="application/x-www-form-urlencoded", **extra
    )


def post_json(client, url: str, body):
    # json.dumps writes a lone surrogate as the escape \ud800, which is valid JSON text.
    return client.post(url, data=json.dumps(body), content_type="application/json")


# -- verdicts ---------------------------------------------------------------------------------


def html_of(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode("utf-8", errors="replace")


def assert_escaped(response) -> None:
    html = html_of(response)
    for raw in RAW_MARKUP:
        assert raw not in html, f"unescaped {raw!r} in the page"


def assert_api_answer(response, *allowed: int) -> None:
    """Never a 500: one of the expected codes, and every refusal says why in the one shape."""
    assert response.status_code in allowed, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) <= {"error", "message", "fields"}, body
        assert isinstance(body["error"], str) and body["error"]
        assert isinstance(body["message"], str) and body["message"].strip()


def carries_nul(data: dict) -> bool:
    """Whether a NUL is in a field's name or value: the edge refuses those (cratos.validation)."""
    return any(
        "\x00" in key
        or any("\x00" in value for value in (values if isinstance(values, list) else [values]))
        for key, values in data.items()
    )


def assert_refused_at_the_edge(response) -> None:
    assert response.status_code == 400, response.status_code
    assert "NUL character" in html_of(response)


def assert_form_told(response) -> None:
    """The form came back (200 or 4xx) naming what is wrong."""
    form = response.context["form"]
    assert form.errors, "the form came back without saying why"
    for messages in form.errors.values():
        assert all(str(message).strip() for message in messages)


# -- the world the input lands in ---------------------------------------------------------------


@pytest.fixture
def people(db):
    groups = ensure_roles()
    alice = UserFactory(username="alice")
    alice.groups.add(groups["Requesters"])
    bob = UserFactory(username="bob", is_staff=True)
    bob.groups.add(groups["Approvers"])
    dave = UserFactory(username="dave", groups=["Approvers"])
    carol = UserFactory(username="carol")
    carol.groups.add(groups["Reviewers"])
    return {"alice": alice, "bob": bob, "dave": dave, "carol": carol}


@pytest.fixture
def web(db):
    web = ApplicationFactory(name="web", tags=[{"key": "team", "value": "shop"}])
    ApplicationFactory(name="api")
    BindingFactory(
        application=web,
        cluster=ClusterFactory(name="prod"),
        namespace="shop",
        deployment_name="web",
    )
    return web


@pytest.fixture
def authorized(people, web):
    """alice holds a live authorization for web."""
    return TicketFactory(applicant=people["alice"], applications=[web], approved_by=people["dave"])


def client_for(user, *, api: bool = False):
    client = APIClient()
    if api:
        client.force_authenticate(user)
    else:
        client.force_login(user)
    return client


def withdraw_drafts(user) -> None:
    """Cancel what an example left open, so the draft limit never refuses the next one."""
    for ticket in Ticket.objects.filter(applicant=user, state=Ticket.State.NEW):
        services.cancel_ticket(ticket=ticket, actor=user)


def new_ticket(applicant, web, *, submitted: bool) -> Ticket:
    withdraw_drafts(applicant)
    return TicketFactory(applicant=applicant, applications=[web], submitted=submitted)


# -- the ticket API -----------------------------------------------------------------------------


@EXAMPLES
@given(
    body=json_body(
        {
            "workOrderKey": st.just("APPLICATION_REDEPLOY") | json_values,
            "applications": st.lists(st.sampled_from(["web", "api"]) | texts, max_size=4)
            | wrong_types,
            "reason": json_values,
        }
    )
)
@example(body={"\ud800": None})
@example(body=VALID_TICKET | {"reason": PAYLOADS[0]})
@example(body=VALID_TICKET | {"reason": LONG[0]})
def test_ticket_api_create(people, web, body):
    alice = people["alice"]
    withdraw_drafts(alice)

    response = post_json(client_for(alice, api=True), "/api/v1/tickets/", body)

    assert_api_answer(response, 201, 400)
    if response.status_code == 201:
        page = client_for(alice).get(reverse("tickets:detail", args=[response.json()["ticketNo"]]))
        assert page.status_code == 200
        assert_escaped(page)


@EXAMPLES
@given(
    body=json_body(
        {
            "reason": json_values,
            "approvers": st.dictionaries(texts, json_values, max_size=3) | wrong_types,
        }
    )
)
@example(body={"approvers": {"\ud800": "bob"}})
@example(body={"reason": PAYLOADS[3]})
def test_ticket_api_submit(people, web, body):
    alice = people["alice"]
    ticket = new_ticket(alice, web, submitted=False)

    response = post_json(
        client_for(alice, api=True), f"/api/v1/tickets/{ticket.ticket_no}/submit/", body
    )

    assert_api_answer(response, 200, 400)
    page = client_for(alice).get(reverse("tickets:detail", args=[ticket.ticket_no]))
    assert page.status_code == 200
    assert_escaped(page)


@EXAMPLES
@given(
    action=st.sampled_from(["approve", "reject"]),
    body=json_body({"comment": json_values, "reason": json_values}),
)
@example(action="approve", body={"comment": PAYLOADS[0]})
@example(action="reject", body={"reason": PAYLOADS[1]})
def test_ticket_api_vote(people, web, action, body):
    ticket = new_ticket(people["alice"], web, submitted=True)
    bob = people["bob"]

    response = post_json(
        client_for(bob, api=True), f"/api/v1/tickets/{ticket.ticket_no}/{action}/", body
    )

    assert_api_answer(response, 200, 400)
    page = client_for(bob).get(reverse("tickets:detail", args=[ticket.ticket_no]))
    assert page.status_code == 200
    assert_escaped(page)


# -- the redeploy API and form ------------------------------------------------------------------

names = st.sampled_from(["web", "shop", "prod"]) | texts


@EXAMPLES
@given(
    body=json_body(
        {
            "applicationName": names | wrong_types,
            "namespace": names | wrong_types,
            "deploymentName": names | wrong_types,
            "cluster": names | wrong_types,
        }
    )
)
@example(body=VALID_REDEPLOY)
@example(body=VALID_REDEPLOY | {"\ud800": 1})
@example(body=VALID_REDEPLOY | {"namespace": "Shop_1"})
def test_redeploy_api(people, authorized, body):
    response = post_json(client_for(people["alice"], api=True), "/api/v1/redeploys/", body)

    # 403: an application alice holds no authorization for, in the manual's words.
    assert_api_answer(response, 202, 400, 403)
    if response.status_code == 403:
        assert response.json()["message"] == "Unauthorized access"


@EXAMPLES
@given(
    data=st.fixed_dictionaries(
        {},
        optional={
            "application": names,
            "namespace": names,
            "deployment": names,
            "cluster": names,
            "confirmed": st.sampled_from(["1", "0", "", "yes"]) | texts,
            "extra": texts,
        },
    ),
    prefill=st.booleans(),
)
@example(data=VALID_FORM | {"application": PAYLOADS[0]}, prefill=False)
@example(data=VALID_FORM | {"deployment": PAYLOADS[1]}, prefill=False)
@example(data={"application": "\ud800" + PAYLOADS[0]}, prefill=True)
@example(data={"application": "web\x00"}, prefill=True)
@example(data=VALID_FORM | {"application": "web\x00"}, prefill=False)
def test_redeploy_form_page(people, authorized, data, prefill):
    client = client_for(people["alice"])

    if prefill:
        response = client.get(f"/redeploy/?{form_body(data)}")
        if carries_nul(data):
            assert_refused_at_the_edge(response)
        else:
            assert response.status_code == 200
    elif carries_nul(data):
        assert_refused_at_the_edge(post_form(client, "/redeploy/", data))
        return
    else:
        response = post_form(client, "/redeploy/", data)
        # The confirmation, the operation, the form again with its errors, or Unauthorized access.
        assert response.status_code in (200, 302, 400, 403), response.status_code
        if response.status_code == 400:
            assert_form_told(response)
        if response.status_code == 403:
            assert "Unauthorized access" in html_of(response)
    assert_escaped(response)


# -- the ticket pages -------------------------------------------------------------------------


@EXAMPLES
@given(
    data=st.fixed_dictionaries(
        {},
        optional={
            "applications": st.lists(st.sampled_from(["web", "api"]) | texts, max_size=3),
            "reason": texts,
            "action": st.sampled_from(["draft", "submit"]) | texts,
            "extra": texts,
        },
    )
)
@example(data={"applications": ["web"], "reason": PAYLOADS[3], "action": "submit"})
@example(data={"applications": ["web\x00"], "reason": "x"})
def test_new_ticket_form_page(people, web, data):
    alice = people["alice"]
    withdraw_drafts(alice)

    response = post_form(client_for(alice), reverse("tickets:create"), data)

    if carries_nul(data):
        assert_refused_at_the_edge(response)
        return
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 200:
        assert_form_told(response)
        assert_escaped(response)
    else:
        assert_escaped(client_for(alice).get(response.url))


@EXAMPLES
@given(
    decision=st.sampled_from(["approve", "reject"]) | texts,
    comment=texts,
    reason=texts,
    confirmed=st.booleans(),
)
@example(decision="reject", comment="", reason=PAYLOADS[3], confirmed=True)
@example(decision="approve", comment=PAYLOADS[0], reason="", confirmed=False)
def test_vote_page(people, web, decision, comment, reason, confirmed):
    ticket = new_ticket(people["alice"], web, submitted=True)
    data = {
        "decision": decision,
        "vote": f"{ticket.ticket_no}:{ticket.current_node_id}",
        "comment": comment,
        "reason": reason,
    }
    if confirmed:
        data["confirmed"] = "yes"
    client = client_for(people["bob"])

    response = post_form(client, reverse("tickets:approval-confirm"), data, follow=True)

    if carries_nul(data):
        assert_refused_at_the_edge(response)
        return
    assert response.status_code == 200
    assert_escaped(response)
    assert_escaped(client.get(reverse("tickets:detail", args=[ticket.ticket_no])))


@EXAMPLES
@given(reason=texts)
@example(reason=PAYLOADS[3])
@example(reason=LONG[1])
@example(reason="\x00")
def test_revoke_reason_page(people, web, reason):
    alice = people["alice"]
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=people["dave"])
    entry = ticket.entries.get()
    client = client_for(people["bob"])

    response = post_form(
        client, reverse("tickets:revoke", args=[ticket.ticket_no, entry.pk]), {"reason": reason}
    )

    entry.refresh_from_db()
    if carries_nul({"reason": reason}):
        assert_refused_at_the_edge(response)
        assert entry.state == TicketEntry.State.AUTHORIZED
    elif response.status_code == 302:
        assert entry.state == TicketEntry.State.REVOKED
        response = client.get(response.url)
    else:
        # 200: the form's own check; 400: the service's ("Give a reason for the revocation.").
        assert response.status_code in (200, 400), response.status_code
        assert_form_told(response)
        assert entry.state == TicketEntry.State.AUTHORIZED
    assert_escaped(response)


@EXAMPLES
@given(reason=texts)
@example(reason=PAYLOADS[3])
@example(reason="\x00")
@example(reason=LONG[0])
def test_admin_reject_reason(people, web, reason):
    ticket = new_ticket(people["alice"], web, submitted=True)
    client = client_for(people["bob"])
    data = {
        "action": "reject_selected",
        ACTION_CHECKBOX_NAME: [str(ticket.pk)],
        "index": "0",
        "post": "yes",
        "reason": reason,
    }

    response = post_form(client, reverse("admin:tickets_ticket_changelist"), data)

    ticket.refresh_from_db()
    if carries_nul(data):
        assert_refused_at_the_edge(response)
        assert ticket.state == Ticket.State.IN_APPROVAL
    elif response.status_code == 302:
        assert ticket.state == Ticket.State.REJECTED
        assert ticket.approvals.get().comment == received(reason).strip()
        for url in (
            reverse("admin:tickets_ticket_change", args=[ticket.pk]),
            reverse("tickets:detail", args=[ticket.ticket_no]),
        ):
            assert_escaped(client.get(url))
    else:
        assert response.status_code == 200, response.status_code
        assert_form_told(response)
        assert ticket.state == Ticket.State.IN_APPROVAL
    assert_escaped(response)


# -- the audit page's filters -----------------------------------------------------------------

SORTS = ["time", "-time", "actor", "-actor", "action", "outcome", "application", "-cluster"]
cursor_values = st.lists(
    st.one_of(
        texts,
        st.integers(min_value=-(2**70), max_value=2**70),
        st.datetimes(timezones=st.timezones()).map(lambda when: when.isoformat()),
        st.sampled_from(["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00-14:00"]),
        wrong_types,
    ),
    max_size=4,
)
cursors = texts | st.builds(
    lambda sort, values: (
        base64.urlsafe_b64encode(json.dumps([sort, values]).encode()).decode().rstrip("=")
    ),
    st.sampled_from(SORTS) | texts,
    cursor_values,
)
days = st.dates().map(lambda day: day.isoformat()) | st.sampled_from(
    ["9999-12-31", "0001-01-01", "2024-02-30", "2024-13-01", "-1"]
)


@EXAMPLES
@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "actor": texts,
            "action": st.sampled_from(["ticket.created", "redeploy.failed"]) | texts,
            "outcome": st.sampled_from(["SUCCESS", "FAILURE"]) | texts,
            "application": texts,
            "cluster": texts,
            "namespace": texts,
            "ticket_no": texts,
            "created_after": days | texts,
            "created_before": days | texts,
            "q": texts,
            "sort": st.sampled_from(SORTS) | texts,
            "after": cursors,
            "before": cursors,
            "per_page": st.sampled_from(["25", "100", "0", "-1", "1e9", "\u0665\u0660"]) | texts,
            "_export": st.sampled_from(["csv", "json"]) | texts,
        },
    )
)
@example(params={"created_before": "9999-12-31"})
@example(params={"actor": PAYLOADS[0], "_export": "csv"})
@example(params={"q": PAYLOADS[1], "sort": PAYLOADS[2]})
def test_audit_filters(people, params):
    if not AuditEvent.objects.exists():
        AuditEventFactory.create_batch(3, message='<script>alert("xss")</script>')

    response = client_for(people["carol"]).get(f"/audit/?{form_body(params)}")

    assert response.status_code in (200, 400), response.status_code
    if carries_nul(params):
        assert_refused_at_the_edge(response)
    elif response.status_code == 400:
        assert "Fix the filters" in html_of(response) or "Export format" in html_of(response)
    if not params.get("_export") or response.status_code != 200:
        assert_escaped(response)


# -- what applications carry: tags on the ticket page and in the Markdown table -----------------

tag_texts = texts.filter(lambda text: "\ud800" not in text)  # JSON in PostgreSQL: no surrogates
tags = st.lists(
    st.fixed_dictionaries({"key": tag_texts.filter(bool), "value": tag_texts}), max_size=4
)
# CommonMark ends a line at \n, \r\n or \r; a cell's pipe is escaped by a backslash.
LINE_END = re.compile(r"\r\n|\r|\n")
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
application_numbers = itertools.count()


@EXAMPLES
@given(tags=tags)
@example(tags=[{"key": "team", "value": "shop\r| injected | row"}])
@example(tags=[{"key": PAYLOADS[0], "value": PAYLOADS[1]}])
def test_tags_are_escaped_on_the_pages_and_keep_the_markdown_table_whole(people, tags):
    tags = [
        {"key": tag["key"].replace("\x00", ""), "value": tag["value"].replace("\x00", "")}
        for tag in tags
        if tag["key"].replace("\x00", "")
    ]  # PostgreSQL's JSON holds no NUL either
    application = ApplicationFactory(name=f"tagged-{next(application_numbers)}", tags=tags)
    ticket = new_ticket(people["alice"], application, submitted=True)
    bob = client_for(people["bob"])

    for client, url in (
        (client_for(people["alice"]), reverse("tickets:detail", args=[ticket.ticket_no])),
        (bob, reverse("tickets:approvals")),
        (bob, reverse("admin:tickets_ticket_change", args=[ticket.pk])),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_escaped(response)

    lines = LINE_END.split(selectors.entries_markdown(ticket=ticket))
    assert len(lines) == 3, lines  # header, rule, one row per entry
    for line in lines:
        assert len(CELL_SEPARATOR.split(line)) == 4, line  # "| name | tags |": two cells
