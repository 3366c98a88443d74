"""The application pages: /applications/ (table and search) and /applications/<name>/ (tags,
bindings, my live authorization, and the audit trail for reviewers)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from redeploy.models import DeploymentBinding
from tests.factories import (
    ApplicationFactory,
    AuditEventFactory,
    BindingFactory,
    ClusterFactory,
    RedeployOperationFactory,
    TicketFactory,
    UserFactory,
)
from tests.support import consume, page

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'


def list_url() -> str:
    return reverse("redeploy:applications")


def detail_url(name: str) -> str:
    return reverse("redeploy:application", kwargs={"name": name})


def listed(response) -> list[str]:
    return [row.record.name for row in response.context["table"].page.object_list]


@pytest.fixture
def web():
    application = ApplicationFactory(
        name="web",
        description="The storefront",
        tags=[{"key": "team", "value": "shop"}, {"key": "env", "value": "prod"}],
    )
    for cluster, namespace in (("prod-east", "shop"), ("prod-west", "shop"), ("staging", "qa")):
        BindingFactory(
            application=application,
            cluster=ClusterFactory(name=cluster),
            namespace=namespace,
            deployment_name="web-frontend",
        )
    return application


# --- who may look ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/applications/", "/applications/web/"])
def test_anonymous_is_sent_to_log_in(client, web, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_every_signed_in_user_may_browse(client, web):
    client.force_login(UserFactory(username="nobody"))
    assert client.get(list_url()).status_code == 200
    assert client.get(detail_url("web")).status_code == 200


def test_the_pages_are_read_only(as_alice, web):
    assert as_alice.post(list_url()).status_code == 405
    assert as_alice.post(detail_url("web")).status_code == 405


# --- the list ----------------------------------------------------------------------------------


def test_the_list_shows_name_description_tags_and_bindings(as_alice, web):
    ApplicationFactory(name="api", description="", tags=[])

    response = as_alice.get(list_url())

    assert listed(response) == ["api", "web"]
    html = page(response)
    assert f'<a href="{detail_url("web")}">web</a>' in html
    assert "The storefront" in html
    assert (
        '<span class="chip">team:shop</span><span class="chip">env:prod</span>' in html
    )  # tags as chips
    rows = {row.record.name: row for row in response.context["table"].page.object_list}
    assert rows["web"].get_cell("binding_count") == 3
    assert rows["api"].get_cell("binding_count") == 0


def test_the_list_shows_the_synced_state_and_the_last_redeploy(as_alice, web):
    east, west, _staging = web.bindings.order_by("cluster__name")
    DeploymentBinding.objects.filter(pk=east.pk).update(
        desired_replicas=3, ready_replicas=3, managed_by="Argo CD", seen_at=timezone.now()
    )
    DeploymentBinding.objects.filter(pk=west.pk).update(
        desired_replicas=3, ready_replicas=1, paused=True
    )
    RedeployOperationFactory(application_name="web", started_at=timezone.now())

    html = page(as_alice.get(list_url()))

    assert '<span class="badge badge-success">3/3</span>' in html
    assert '<span class="chip">managed by Argo CD</span>' in html
    assert '<span class="badge badge-pending">1/3</span>' in html
    assert '<span class="badge badge-failure">paused</span>' in html
    assert "not synced" in html  # staging was never seen by a sync
    assert re.search(r'<time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>', html)


def test_search_keeps_names_containing_the_text_in_any_case(as_alice, web):
    for name in ("web-admin", "api", "WEBHOOKS"):
        ApplicationFactory(name=name)

    response = as_alice.get(list_url(), {"q": " Web "})

    assert listed(response) == ["WEBHOOKS", "web", "web-admin"]
    assert 'name="q" value="Web"' in page(response)


def test_a_search_that_finds_nothing_says_so(as_alice, web):
    response = as_alice.get(list_url(), {"q": XSS})

    assert listed(response) == []
    assert escape(XSS) in page(response)
    assert XSS not in page(response)
    assert "No application matches this search." in page(response)
    assert f'<a href="{list_url()}">Clear filters</a>' in page(response)


def test_without_applications_the_page_says_who_adds_them(as_alice):
    response = as_alice.get(list_url())

    assert "No applications are available." in page(response)
    assert 'role="search"' not in page(response)


def test_the_list_sorts_by_number_of_bindings(as_alice, web):
    ApplicationFactory(name="api")

    response = as_alice.get(list_url(), {"sort": "-binding_count"})

    assert listed(response) == ["web", "api"]


def test_the_list_costs_the_same_queries_for_many_applications(as_alice, web):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert as_alice.get(list_url()).status_code == 200
        return len(captured)

    few = queries()
    for number in range(20):
        BindingFactory(application=ApplicationFactory(name=f"app-{number:02d}", tags=[]))
    assert queries() == few


# --- one application ---------------------------------------------------------------------------


def test_the_page_shows_tags_and_bindings(as_alice, web):
    response = as_alice.get(detail_url("web"))

    html = page(response)
    assert "<h1>web</h1>" in html
    assert "The storefront" in html
    assert "<code>team:shop,env:prod</code>" in html
    assert [
        (b.cluster.name, b.namespace, b.deployment_name) for b in response.context["bindings"]
    ] == [
        ("prod-east", "shop", "web-frontend"),
        ("prod-west", "shop", "web-frontend"),
        ("staging", "qa", "web-frontend"),
    ]
    assert "<td>prod-west</td>" in html
    assert f'href="{reverse("tickets:create")}"' in html


def test_an_unknown_application_is_not_found(as_alice):
    response = as_alice.get(detail_url("nope"))

    assert response.status_code == 404
    assert "Application nope does not exist." in page(response)
    assert "error.html" in [template.name for template in response.templates]
    chinese = as_alice.get(detail_url("nope"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "应用 nope 不存在。" in page(chinese)


def test_any_name_has_its_page(as_alice):
    ApplicationFactory(name="team/web app?", description=XSS)

    response = as_alice.get(list_url())
    assert "/applications/team/web%20app%3F/" in page(response)

    detail = as_alice.get("/applications/team/web%20app%3F/")
    assert detail.status_code == 200
    assert escape(XSS) in page(detail) and XSS not in page(detail)


def test_my_live_authorization_offers_the_redeploy(as_alice, approved_ticket, web):
    response = as_alice.get(detail_url("web"))

    live = response.context["authorization"]
    assert live.grant.ticket_no == approved_ticket.ticket_no
    assert 0 < live.seconds_left <= 7200
    html = page(response)
    assert f'href="{reverse("tickets:detail", args=[approved_ticket.ticket_no])}"' in html
    assert f'href="{reverse("redeploy:request")}?application=web"' in html
    assert "data-seconds-left=" in html


def test_without_an_authorization_there_is_no_redeploy_button(client, approved_ticket, web):
    ApplicationFactory(name="api")
    client.force_login(approved_ticket.applicant)
    other_app = client.get(detail_url("api"))
    client.force_login(UserFactory(username="dave"))
    other_user = client.get(detail_url("web"))

    for response in (other_app, other_user):
        assert response.context["authorization"] is None
        assert "/redeploy/?application=" not in page(response)
        assert "You hold no live authorization" in page(response)


def test_a_used_authorization_is_gone_from_the_page(as_alice, approved_ticket, web):
    consume(username="alice", application_name="web")

    assert as_alice.get(detail_url("web")).context["authorization"] is None


# --- the audit trail ----------------------------------------------------------------------------


def test_requesters_do_not_see_the_audit_trail(as_alice, web):
    AuditEventFactory(application_name="web", message="secret step")

    response = as_alice.get(detail_url("web"))

    assert response.context["audit_trail"] is None
    assert "Audit trail" not in page(response)
    assert "secret step" not in page(response)


def test_reviewers_see_the_applications_own_trail(client, reviewer, web):
    mine = [AuditEventFactory(application_name="web", message=f"step {n}") for n in range(3)]
    AuditEventFactory(application_name="api", message="not this one")

    response = client.get(detail_url("web"))

    trail = response.context["audit_trail"]
    assert [event.pk for event in trail.trail.events] == [event.pk for event in mine[::-1]]
    assert "application" not in [column.name for column in trail.columns]
    html = page(response)
    assert "Audit trail" in html and "step 2" in html and "not this one" not in html
    assert f'href="{reverse("audit:events")}?application=web"' in html


def test_the_page_costs_the_same_queries_however_much_there_is(client, reviewer, web):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(detail_url("web")).status_code == 200
        return len(captured)

    few = queries()
    for number in range(10):
        BindingFactory(application=web, cluster=ClusterFactory(name=f"extra-{number}"))
    for _ in range(40):
        AuditEventFactory(application_name="web")
    for application in (web, ApplicationFactory(name="api")):
        TicketFactory(
            applicant=reviewer,
            applications=[application],
            approved_by=UserFactory(username="bob", groups=["Approvers"]),
        )
    assert queries() == few
