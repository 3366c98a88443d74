"""cratos.validation and the error handlers: each class of input that once got a 500 gets a 400
(404 for a path) in the usual format: JSON under /api/, the error page elsewhere."""

import base64
import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client, RequestFactory
from django.urls import reverse

from cratos.audit.models import AuditEvent
from cratos.middleware import server_error
from cratos.validation import MAX_ID, MAX_JSON_DEPTH, parse_id
from tests.factories import AuditEventFactory, TicketFactory, UserFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

NUL_REFUSED = "The request contains a NUL character, which no field accepts."
TOO_DEEP = "The JSON body is nested too deeply."
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def signed_in(alice):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    return client


def assert_api_refusal(response, status: int, message: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] and body["message"]
    if message is not None:
        assert body["message"] == message
    return body


def assert_error_page(response, status: int, message: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert response.templates[0].name == "error.html"
    assert message in response.content.decode()


# -- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("007", 7),
        (str(MAX_ID), MAX_ID),
        (str(MAX_ID + 1), None),
        ("9" * 5000, None),  # past int()'s digit limit too
        ("0", None),
        ("-1", None),
        ("²", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits: int() takes them, no id is written so
        ("\uff11", None),  # a full-width digit
        ("", None),
        (" 1", None),
        ("1e3", None),
    ],
)
def test_parse_id_takes_ascii_digits_within_bigint(text, expected):
    assert parse_id(text) == expected


@pytest.mark.parametrize("node", ["²", "99999999999999999999999", "\u0661"])
def test_a_vote_for_a_node_no_id_names_is_refused_by_the_form(bob, node):
    client = Client(raise_request_exception=False)
    client.force_login(bob)

    response = client.post(
        reverse("tickets:approval-confirm"),
        {"decision": "approve", "vote": f"X:{node}"},
        follow=True,
    )

    assert response.status_code == 200
    assert "The tickets to vote on were not understood" in response.content.decode()


@pytest.mark.parametrize("selected", ["²", "abc", "1 OR 1=1"])
def test_an_admin_action_on_rows_no_key_names_is_refused(selected):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client(raise_request_exception=False)
    client.force_login(root)
    data = {"action": "reject_selected", ACTION_CHECKBOX_NAME: [selected], "post": "yes"}

    response = client.post(reverse("admin:tickets_ticket_changelist"), data)

    assert_error_page(response, 400, "The selected rows are not valid; reload the page.")


def test_an_admin_action_on_a_row_past_bigint_finds_nothing(alice, bob):
    ticket = TicketFactory(applicant=alice, submitted=True)
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    data = {
        "action": "reject_selected",
        ACTION_CHECKBOX_NAME: [str(MAX_ID + 1)],
        "post": "yes",
        "reason": "x",
    }

    response = client.post(reverse("admin:tickets_ticket_changelist"), data)

    assert response.status_code in (200, 302)
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL


def test_an_entry_id_past_bigint_is_not_found(bob):
    client = Client(raise_request_exception=False)
    client.force_login(bob)

    response = client.post(f"/tickets/X/entries/{MAX_ID + 1}/revoke/", {"reason": "x"})

    assert response.status_code == 404


# -- NUL --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/tickets/%00/", "/applications/web%00/"])
def test_a_nul_in_the_path_is_not_found(signed_in, path):
    assert_error_page(signed_in.get(path), 404, "Not found.")


def test_a_nul_in_an_api_path_is_not_found_in_json(signed_in):
    assert_api_refusal(signed_in.get("/api/v1/tickets/%00/"), 404)


@pytest.mark.parametrize(
    "path", ["/applications/?q=%00", "/redeploy/?application=web%00", "/audit/?actor=%00"]
)
def test_a_nul_in_the_query_string_is_refused(signed_in, path):
    assert_error_page(signed_in.get(path), 400, NUL_REFUSED)


def test_a_nul_in_a_query_string_of_the_api_is_refused_in_json(signed_in):
    assert_api_refusal(signed_in.get("/api/v1/tickets/?state=%00"), 400, NUL_REFUSED)


@pytest.mark.parametrize(
    "body", ["applications=web%00&reason=x", "applications=web&reason=x&extra%00=1"]
)
def test_a_nul_in_a_form_field_or_its_name_is_refused(signed_in, body):
    response = signed_in.post(reverse("tickets:create"), body, content_type=FORM)

    assert_error_page(response, 400, NUL_REFUSED)
    assert not Ticket.objects.exists()


def test_a_nul_in_a_multipart_field_is_refused(signed_in):
    response = signed_in.post(reverse("tickets:create"), {"applications": "web", "reason": "\x00"})

    assert_error_page(response, 400, NUL_REFUSED)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"reason": "a\x00b"}, "reason: "),
        ({"r\x00": "x"}, ""),
        ({"applications": [["\x00"]]}, "applications[0][0]: "),
        ({"approvers": {"first": "bob", "n\x00de": "bob"}}, "approvers: "),
    ],
)
def test_a_nul_in_json_is_refused_saying_where(signed_in, body, where):
    body = {"workOrderKey": "APPLICATION_REDEPLOY", "applications": ["web"], **body}

    response = signed_in.post("/api/v1/tickets/", json.dumps(body), content_type="application/json")

    assert_api_refusal(response, 400, where + NUL_REFUSED)


# -- JSON nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/tickets/", "/api/v1/redeploys/", "/api/v1/pod-deletions/"]
)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_nested_too_deeply_is_refused(signed_in, path, depth):
    body = '{"a": ' * depth + "1" + "}" * depth

    response = signed_in.post(path, body, content_type="application/json")

    assert_api_refusal(response, 400, TOO_DEEP)


def test_json_as_deep_as_allowed_is_read(signed_in):
    body = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)

    response = signed_in.post("/api/v1/redeploys/", body, content_type="application/json")

    body = assert_api_refusal(response, 400)
    assert body["message"] != TOO_DEEP


# -- the audit page's cursor ------------------------------------------------------------------


def _cursor(sort: str, values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort, values]).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59+00:00"]
)
@pytest.mark.parametrize("direction", ["after", "before"])
def test_a_cursor_at_the_edge_of_the_calendar_is_read_or_ignored(reviewer, client, when, direction):
    AuditEventFactory.create_batch(2)
    event = AuditEvent.objects.first()

    response = client.get(f"/audit/?{direction}={_cursor('-time', [when, event.pk])}")

    assert response.status_code == 200


# -- Django's own error answers ---------------------------------------------------------------


def test_an_unknown_api_path_is_not_found_in_json(signed_in):
    assert_api_refusal(signed_in.get("/api/v1/nothing-here/"), 404)


def test_an_unknown_page_is_the_error_page(signed_in):
    assert_error_page(signed_in.get("/nothing-here/"), 404, "Not found.")


def test_a_server_error_in_the_api_answers_json():
    response = server_error(RequestFactory().get("/api/v1/tickets/"))

    assert response.status_code == 500
    assert json.loads(response.content) == {
        "error": "server_error",
        "message": "Internal server error.",
    }


def test_a_server_error_on_a_page_is_django_s_plain_page():
    response = server_error(RequestFactory().get("/tickets/"))

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
