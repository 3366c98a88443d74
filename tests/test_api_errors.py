"""cratos.api: every API refusal is a 4xx `{"error": code, "message": ...}`, never a 500."""

import json

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import exceptions

from cratos.api import exception_handler
from cratos.exceptions import (
    DomainError,
    InvalidTransition,
    NotFound,
    PermissionRefused,
    ServiceUnavailable,
    ValidationFailed,
)
from tests.factories import ApplicationFactory
from tests.support import client_for

TICKETS = "/api/v1/tickets/"
LONG = "x" * 10_000


@pytest.mark.parametrize(
    ("exc", "status", "body"),
    [
        (
            ValidationFailed("Give a reason."),
            400,
            {"error": "invalid", "message": "Give a reason."},
        ),
        (
            PermissionRefused("Unauthorized access"),
            403,
            {"error": "forbidden", "message": "Unauthorized access"},
        ),
        (
            NotFound("The deployment=web resource does not exist"),
            404,
            {"error": "not_found", "message": "The deployment=web resource does not exist"},
        ),
        (
            InvalidTransition("Ticket 1 is CLOSED; it cannot be submitted."),
            409,
            {
                "error": "invalid_transition",
                "message": "Ticket 1 is CLOSED; it cannot be submitted.",
            },
        ),
        (
            ServiceUnavailable(),
            503,
            {"error": "service_unavailable", "message": ServiceUnavailable.default_message},
        ),
        (
            DomainError("Operation failed err: boom", code="operation_failed"),
            400,
            {"error": "operation_failed", "message": "Operation failed err: boom"},
        ),
    ],
)
def test_domain_errors_keep_their_words(exc, status, body):
    response = exception_handler(exc, {})

    assert response.status_code == status
    assert response.data == body


def test_django_404_and_permission_denied():
    response = exception_handler(Http404("No Ticket matches the given query."), {})
    assert response.status_code == 404
    assert response.data == {"error": "not_found", "message": "Not found."}

    response = exception_handler(PermissionDenied(), {})
    assert response.status_code == 403
    assert response.data == {
        "error": "permission_denied",
        "message": "You do not have permission to perform this action.",
    }


def test_validation_errors_read_as_a_sentence_with_fields():
    exc = exceptions.ValidationError(
        {
            "applications": {3: ["Ensure this field has no more than 128 characters."]},
            "approvers": {"Lead": ["Not a valid string."]},
            "reason": ["Not a valid string.", "Another problem."],
            "non_field_errors": ["Invalid data."],
        }
    )

    response = exception_handler(exc, {})

    assert response.status_code == 400
    assert response.data == {
        "error": "invalid",
        "message": "applications[3]: Ensure this field has no more than 128 characters.; "
        "approvers.Lead: Not a valid string.; "
        "reason: Not a valid string. Another problem.; "
        "Invalid data.",
        "fields": {
            "applications[3]": ["Ensure this field has no more than 128 characters."],
            "approvers.Lead": ["Not a valid string."],
            "reason": ["Not a valid string.", "Another problem."],
        },
    }


def test_other_api_exceptions_keep_status_and_headers():
    response = exception_handler(exceptions.Throttled(wait=30), {})
    assert response.status_code == 429
    assert response.data["error"] == "throttled"
    assert response["Retry-After"] == "30"

    response = exception_handler(exceptions.MethodNotAllowed("DELETE"), {})
    assert response.status_code == 405
    assert response.data == {
        "error": "method_not_allowed",
        "message": 'Method "DELETE" not allowed.',
    }


def test_unexpected_exceptions_are_left_to_the_server_error_path():
    assert exception_handler(ValueError("bug"), {}) is None


# Through the API: bad input is refused with a clear message, never a 500.


@pytest.fixture
def client(alice):
    ApplicationFactory(name="web")
    return client_for(alice)


def post_json(client, url, body):
    """POST a body exactly as given (json.dumps escapes what a client could send)."""
    return client.post(url, data=json.dumps(body), content_type="application/json")


def valid(**overrides) -> dict:
    return {
        "workOrderKey": "APPLICATION_REDEPLOY",
        "applications": ["web"],
        "reason": "r",
        **overrides,
    }


def assert_refused(response, status: int, message: str | None = None, fields=None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) <= {"error", "message", "fields"}
    assert body["error"]
    assert isinstance(body["message"], str)
    assert body["message"]
    if message is not None:
        assert body["message"] == message
    if fields is not None:
        assert body["fields"] == fields
    return body


@pytest.mark.parametrize(
    ("body", "message", "fields"),
    [
        (
            {},
            "workOrderKey: This field is required.; applications: This field is required.",
            {
                "workOrderKey": ["This field is required."],
                "applications": ["This field is required."],
            },
        ),
        (
            valid(admin=True, state="APPROVED"),
            "admin: Unknown field.; state: Unknown field.",
            {"admin": ["Unknown field."], "state": ["Unknown field."]},
        ),
        (valid(workOrderKey=5), "workOrderKey: Not a valid string.", None),
        (valid(workOrderKey=None), "workOrderKey: This field may not be null.", None),
        (
            valid(applications="web"),
            'applications: Expected a list of items but got type "str".',
            None,
        ),
        (
            valid(applications={"web": 1}),
            'applications: Expected a list of items but got type "dict".',
            None,
        ),
        (valid(applications=[1, "web"]), "applications[0]: Not a valid string.", None),
        (valid(applications=[["web"]]), "applications[0]: Not a valid string.", None),
        (valid(reason=True), "reason: Not a valid string.", None),
        (valid(reason={"a": 1}), "reason: Not a valid string.", None),
        (
            valid(reason=LONG),
            "reason: Ensure this field has no more than 4000 characters.",
            {"reason": ["Ensure this field has no more than 4000 characters."]},
        ),
        (
            valid(applications=[LONG]),
            "applications[0]: Ensure this field has no more than 128 characters.",
            {"applications[0]": ["Ensure this field has no more than 128 characters."]},
        ),
        (
            valid(workOrderKey=LONG),
            "workOrderKey: Ensure this field has no more than 64 characters.",
            None,
        ),
        (
            valid(applications=[f"app-{n}" for n in range(51)]),
            "applications: Ensure this field has no more than 50 elements.",
            None,
        ),
        # Refused by the parser (cratos.validation), before the serializer.
        (
            valid(reason="a\x00b"),
            "reason: The request contains a NUL character, which no field accepts.",
            None,
        ),
        (valid(reason="\ud800"), "reason: Surrogate characters are not allowed: U+D800.", None),
        (valid(applications=["  "]), "applications[0]: This field may not be blank.", None),
        # The rest are the services' refusals, in their words.
        (valid(workOrderKey="NOPE"), "Unknown work order: NOPE", None),
        (valid(applications=[]), "Choose at least one application.", None),
        (valid(applications=["web", "nope"]), "Unknown application: nope", None),
    ],
)
def test_create_refuses_bad_input(client, body, message, fields):
    assert_refused(post_json(client, TICKETS, body), 400, message, fields)


@pytest.mark.parametrize("body", [[], "text", 5, True])
def test_body_must_be_an_object(client, body):
    body = assert_refused(post_json(client, TICKETS, body), 400)
    assert body["message"].startswith("Invalid data. Expected a dictionary")


def test_null_body(client):
    assert_refused(post_json(client, TICKETS, None), 400, "No data provided")


def test_malformed_json_and_wrong_media_type(client):
    response = client.post(TICKETS, data='{"workOrderKey": ', content_type="application/json")
    assert assert_refused(response, 400)["error"] == "parse_error"

    response = client.post(TICKETS, data="workOrderKey", content_type="text/plain")
    assert assert_refused(response, 415)["error"] == "unsupported_media_type"


def test_wrong_method(client):
    for response in (client.delete(TICKETS), client.put(f"{TICKETS}1/", {}, format="json")):
        assert assert_refused(response, 405)["error"] == "method_not_allowed"


def test_draft_limit_is_the_services_words(client):
    for _ in range(3):
        assert post_json(client, TICKETS, valid()).status_code == 201

    assert_refused(
        post_json(client, TICKETS, valid()),
        400,
        "You already have 3 unsubmitted APPLICATION_REDEPLOY tickets; submit or cancel one first.",
    )


def test_action_bodies_are_bounded(client):
    ticket_no = post_json(client, TICKETS, valid()).json()["ticketNo"]
    submit = f"{TICKETS}{ticket_no}/submit/"

    cases = [
        (submit, {"reason": LONG}, "reason: Ensure this field has no more than 4000 characters."),
        (
            submit,
            {"approvers": ["bob"]},
            'approvers: Expected a dictionary of items but got type "list".',
        ),
        (submit, {"approvers": {"Lead": 5}}, "approvers.Lead: Not a valid string."),
        (submit, {"approvers": {LONG: "bob"}}, "approvers: Node names have at most 64 characters."),
        (
            submit,
            {"approvers": {f"node-{n}": "bob" for n in range(51)}},
            "approvers: Too many approvers.",
        ),
        (submit, {"approvers": {"Lead": "bob"}, "extra": 1}, "extra: Unknown field."),
        (
            f"{TICKETS}{ticket_no}/cancel/",
            {"reason": LONG},
            "reason: Ensure this field has no more than 4000 characters.",
        ),
    ]
    for url, body, message in cases:
        assert_refused(post_json(client, url, body), 400, message)

    assert_refused(
        post_json(client, submit, {"approvers": {"Lead": "bob"}}),
        400,
        "Work order APPLICATION_REDEPLOY has no node to choose an approver for: Lead.",
    )
    assert_refused(client.get(f"{TICKETS}{LONG}/"), 404, f"Ticket {LONG} does not exist.")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        ["web", "APPLICATION_REDEPLOY", "\x00", "\ud800", "<script>x</script>", LONG]
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = json_values | st.dictionaries(
    st.sampled_from(["workOrderKey", "applications", "reason", "approvers", "comment", "extra"]),
    json_values,
)


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, action=st.sampled_from(["", "submit/", "approve/", "reject/", "cancel/"]))
def test_any_body_gets_an_answer_never_a_500(client, body, action):
    ticket_no = post_json(client, TICKETS, valid()).json()["ticketNo"]

    response = post_json(client, f"{TICKETS}{ticket_no}/{action}" if action else TICKETS, body)

    assert response.status_code < 500
    if response.status_code >= 400:
        assert_refused(response, response.status_code)
    # Keep the draft limit out of the next example's way.
    for number in {ticket_no, response.json().get("ticketNo")} - {None}:
        client.post(f"{TICKETS}{number}/cancel/")
