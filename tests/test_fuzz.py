"""Fuzz every URL pattern: no input gets a 5xx, and the API never answers with an HTML page.

The resolver is walked, so a new page or endpoint is fuzzed without being named here. Each
pattern gets requests from Hypothesis: GET, POST (and now and then another method), anonymous
and as each role (Requesters, Approvers, Reviewers, a superuser); path parameters that name real
rows or are hostile (NUL, "²", ids past bigint, surrogates, markup); query strings and form, JSON
and multipart bodies made of the same, JSON nested far too deep. Against PostgreSQL, as in
production. The number of requests sent is printed (see it with `-rP`).
"""

import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from django.test import Client
from django.test.client import MULTIPART_CONTENT, encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from cratos.roles import ensure_roles
from tests.factories import (
    ApplicationFactory,
    AuditEventFactory,
    BindingFactory,
    ClusterFactory,
    RedeployOperationFactory,
    TicketFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# With the sweeps' 9 requests per pattern, about 1,400 requests: some 40 s on a quiet machine.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- the patterns -----------------------------------------------------------------------------

PARAMETER = re.compile(r"<(?:\w+:)?(?P<angle>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")


def _routes(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern).removeprefix("^").removesuffix("$")
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield "/" + route


ROUTES = sorted(set(_routes(get_resolver())))


def fill(route: str, values: dict[str, str]) -> str:
    return PARAMETER.sub(
        lambda match: quote(
            values[match["angle"] or match["group"]].encode("utf-8", "surrogatepass"), safe=""
        ),
        route,
    )


def parameters(route: str) -> list[str]:
    return [match["angle"] or match["group"] for match in PARAMETER.finditer(route)]


# -- the values -------------------------------------------------------------------------------

HOSTILE = [
    "",
    "\x00",
    "web\x00",
    "²",
    "\u0661\u0662",  # Arabic-Indic digits
    "\uff11\uff12",  # full-width digits
    "0",
    "-1",
    "99999999999999999999",
    "9" * 400,
    "1e9",
    "\ud800",
    "😀",
    "\u202eevil",
    "..",
    "a/b",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "x" * 2000,
    "00000000-0000-0000-0000-000000000000",
    "9999-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00+14:00",
]
texts = st.sampled_from(HOSTILE) | st.text(max_size=12)
FIELD_NAMES = [
    "application",
    "applications",
    "namespace",
    "deployment",
    "cluster",
    "binding",
    "pods",
    "confirmed",
    "reason",
    "comment",
    "decision",
    "vote",
    "action",
    "_selected_action",
    "post",
    "index",
    "username",
    "password",
    "language",
    "next",
    "name",
    "server",
    "token",
    "q",
    "o",
    "p",
    "sort",
    "after",
    "before",
    "per_page",
    "created_after",
    "_export",
    "workOrderKey",
    "applicationName",
    "deploymentName",
    "approvers",
]
field_names = st.sampled_from(FIELD_NAMES) | texts
fields = st.dictionaries(field_names, texts | st.lists(texts, max_size=3), max_size=4)


def _cursor(sort: str, values: list) -> str:
    raw = json.dumps([sort, values]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


cursors = st.builds(
    _cursor,
    st.sampled_from(["-time", "time", "actor", "-application"]),
    st.lists(texts | st.integers(min_value=-(2**70), max_value=2**70), max_size=3),
)
queries = st.dictionaries(field_names, texts | cursors, max_size=3)

json_scalars = st.none() | st.booleans() | texts | st.integers(min_value=-(2**80), max_value=2**80)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(field_names, children, max_size=3)
    ),
    max_leaves=8,
)


@dataclass
class Body:
    content_type: str
    data: bytes = b""
    described: object = field(default=None)


def form_encoded(data: dict) -> bytes:
    pairs = []
    for key, values in data.items():
        for value in values if isinstance(values, list) else [values]:
            pairs.append(
                quote(key.encode("utf-8", "surrogatepass"), safe="")
                + "="
                + quote(value.encode("utf-8", "surrogatepass"), safe="")
            )
    return "&".join(pairs).encode()


def multipart(data: dict) -> Body:
    clean = {
        key.encode("utf-8", "replace").decode(): (
            [value.encode("utf-8", "replace").decode() for value in values]
            if isinstance(values, list)
            else values.encode("utf-8", "replace").decode()
        )
        for key, values in data.items()
    }
    boundary = "FuzzBoundary"
    return Body(
        f"multipart/form-data; boundary={boundary}", encode_multipart(boundary, clean), data
    )


def deep_json(depth: int) -> Body:
    return Body("application/json", ("[" * depth + "]" * depth).encode(), f"[*{depth}")


bodies = st.one_of(
    st.just(Body("application/x-www-form-urlencoded")),
    fields.map(lambda data: Body("application/x-www-form-urlencoded", form_encoded(data), data)),
    fields.map(multipart),
    json_values.map(
        lambda value: Body(
            "application/json", json.dumps(value).encode("utf-8", "surrogatepass"), value
        )
    ),
    st.sampled_from([50, 5_000, 200_000]).map(deep_json),
    st.just(Body(MULTIPART_CONTENT, b"--BoUnDaRyStRiNg\r\nnot a part", "broken multipart")),
)

# What once got a 500: NUL, "²" and more than bigint in ids, votes and selected rows, out-of-range
# dates in the audit page's cursor, JSON nested too deep.
SWEEP_QUERY = {
    "q": "\x00",
    "after": _cursor("-time", ["0001-01-01T00:00:00+14:00", 1]),
    "binding": "\u00b2",
}
SWEEP_BODIES = [
    Body("application/x-www-form-urlencoded", b"confirmed=1&post=yes&reason=a%00b"),
    Body(
        "application/x-www-form-urlencoded",
        form_encoded(
            {
                "decision": "approve",
                "vote": ["X:\u00b2", "Y:99999999999999999999"],
                "binding": "\u00b2",
                "action": "delete_selected",
                "_selected_action": ["\u00b2", "99999999999999999999"],
                "confirmed": "1",
            }
        ),
    ),
    deep_json(200_000),
    Body("application/json", json.dumps({"applicationName": "web\x00", "9" * 30: 10**30}).encode()),
]

# Anonymous, and a user of each role.
ROLES = [None, "alice", "bob", "carol", "root"]
ROLE_USERS = {
    "alice": {"groups": ["Requesters"]},
    "bob": {"groups": ["Approvers"], "is_staff": True},
    "carol": {"groups": ["Reviewers"]},
    "root": {"is_staff": True, "is_superuser": True},
}


def user_of(role: str):
    """The role's user, made again if an earlier request (the admin's, say) deleted it."""
    return UserFactory(username=role, **ROLE_USERS[role])


# -- the world the requests land in -------------------------------------------------------------


class Clients:
    """A client per role, signed in again only when a request signed it out (or the admin
    deleted its user)."""

    def __init__(self):
        self.clients = {role: Client(raise_request_exception=False) for role in ROLES}

    def __getitem__(self, role: str | None) -> Client:
        client = self.clients[role]
        if role is not None:
            user = user_of(role)
            if client.session.get("_auth_user_id") != str(user.pk):
                client.force_login(user)
        return client


@dataclass
class World:
    """Path parameters naming real rows, what a parameter may be, and the clients."""

    real: list[str]
    values: st.SearchStrategy = field(repr=False)  # kept out of Hypothesis' failure reports
    clients: Clients = field(repr=False)
    sent: int = 0

    def send(self, role: str | None, method: str, path: str, query: dict, body: Body | None):
        if query:
            path = f"{path}?{form_encoded(query).decode()}"
        self.sent += 1
        client = self.clients[role]
        if body is None:
            return client.generic(method, path)
        return client.generic(method, path, body.data, content_type=body.content_type)


@pytest.fixture
def world(work_order, settings):
    """Rows for path parameters to name: users of each role, tickets in each state with a live
    authorization, an operation and audit events. The cluster answers nothing (port 1)."""
    settings.KUBERNETES_RETRY_ATTEMPTS = 1
    settings.KUBERNETES_RETRY_BACKOFF = 0
    ensure_roles()
    users = {role: user_of(role) for role in ROLES if role}
    web = ApplicationFactory(name="web")
    BindingFactory(application=web, cluster=ClusterFactory(name="prod"), namespace="shop")
    draft = TicketFactory(applicant=users["alice"], applications=[web])
    pending = TicketFactory(applicant=users["alice"], applications=[web], submitted=True)
    approved = TicketFactory(applicant=users["alice"], applications=[web], approved_by=users["bob"])
    operation = RedeployOperationFactory(requested_by=users["alice"])
    AuditEventFactory.create_batch(3)
    real = [
        draft.ticket_no,
        pending.ticket_no,
        approved.ticket_no,
        str(approved.entries.get().pk),
        str(pending.pk),
        str(users["alice"].pk),
        str(operation.pk),
        "web",
        "redeploy",
        "tickets",
        "auth",
    ]
    world = World(real=real, values=st.sampled_from(real) | texts, clients=Clients())
    yield world
    print(f"fuzz: {world.sent} requests sent")


# -- the tests --------------------------------------------------------------------------------


def assert_answered(response, method: str, path: str) -> None:
    assert response.status_code < 500, (response.status_code, method, path)
    if path.startswith("/api/") and response.status_code >= 400 and method != "HEAD":
        assert response["Content-Type"].startswith("application/json"), (method, path)
        assert set(response.json()) >= {"error", "message"}


def test_every_pattern_answers_every_role(world):
    """GET on each pattern as each role, its parameters naming real rows or hostile values in
    turn, every other time with a hostile query string."""
    values = itertools.cycle(world.real + HOSTILE)
    queries = itertools.cycle([{}, SWEEP_QUERY])
    for route in ROUTES:
        for role in ROLES:
            path = fill(route, {name: next(values) for name in parameters(route)})
            response = world.send(role, "GET", path, next(queries), None)
            assert_answered(response, "GET", path)


def test_every_pattern_answers_hostile_bodies(world):
    """POST to each pattern each body that once got a 500 somewhere, as the roles in turn."""
    roles = itertools.cycle(ROLES[1:])
    values = itertools.cycle(world.real)
    for route in ROUTES:
        path = fill(route, {name: next(values) for name in parameters(route)})
        for body in SWEEP_BODIES:
            response = world.send(next(roles), "POST", path, {}, body)
            assert_answered(response, "POST", path)


@FUZZ
@given(data=st.data())
def test_no_input_gets_a_server_error(world, data):
    route = data.draw(st.sampled_from(ROUTES), label="route")
    role = data.draw(st.sampled_from(ROLES), label="role")
    method = data.draw(
        st.sampled_from(["GET", "POST"]) | st.sampled_from(["PUT", "DELETE", "HEAD"]),
        label="method",
    )
    values = {name: data.draw(world.values, label=name) for name in parameters(route)}
    query = data.draw(queries, label="query")
    body = data.draw(bodies, label="body") if method != "GET" else None
    path = fill(route, values)
    note(f"{method} {path}")

    response = world.send(role, method, path, query, body)

    assert_answered(response, method, path)
