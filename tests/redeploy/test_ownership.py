"""Ownership on the Kubernetes side: acting on an application needs its owners' team at the time
of the request, the sync takes owners from a label, and the pages and admin show them."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from cratos.exceptions import PermissionRefused
from cratos.teams.models import Team
from redeploy import pod_deletions, redeploys
from redeploy.models import Application
from redeploy.providers import DELETE_POD_GRANTS, REDEPLOY_GRANTS
from tests.factories import ApplicationFactory, UserFactory
from tests.kubesim import seed_demo
from tests.redeploy.conftest import SIM_TOKEN
from tickets import grants

pytestmark = pytest.mark.django_db

WHERE = {"application_name": "web", "namespace": "shop", "deployment_name": "web"}
LEFT = "You may not {verb} web (owned by shop): only members of an owner team may."


@pytest.fixture
def shop(requester, application):
    """Team shop owns web; alice was a member and has just left it."""
    team = Team.objects.create(name="shop")
    application.owner_teams.add(team)
    return team


def test_a_requester_who_left_the_team_can_no_longer_redeploy(approved_ticket, binding, shop):
    with pytest.raises(PermissionRefused, match=re.escape(LEFT.format(verb="redeploy"))):
        redeploys.request_redeploy(user=approved_ticket.applicant, **WHERE)

    event = AuditEvent.objects.get(action="redeploy.refused")
    assert event.message.startswith(LEFT.format(verb="redeploy"))
    assert grants.live_grant(kind=REDEPLOY_GRANTS, username="alice", application_name="web")


def test_an_api_token_of_a_requester_who_left_the_team_no_longer_redeploys(
    approved_ticket, binding, shop
):
    token = Token.objects.create(user=approved_ticket.applicant)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = api.post(
        "/api/v1/redeploys/",
        {"applicationName": "web", "namespace": "shop", "deploymentName": "web"},
        format="json",
    )

    assert response.status_code == 403
    assert response.json()["message"].startswith(LEFT.format(verb="redeploy"))


def test_a_member_of_the_owner_team_redeploys(approved_ticket, binding, shop):
    shop.members.add(approved_ticket.applicant)

    operation = redeploys.request_redeploy(user=approved_ticket.applicant, **WHERE)

    assert operation.ticket == approved_ticket


def test_a_requester_who_left_the_team_can_no_longer_delete_pods(delete_pod_ticket, binding, shop):
    with pytest.raises(PermissionRefused, match=re.escape(LEFT.format(verb="delete pods of"))):
        pod_deletions.request_pod_deletion(
            user=delete_pod_ticket.applicant, pod_names=["web-1"], **WHERE
        )

    assert AuditEvent.objects.filter(action="pod_deletion.refused").exists()
    assert grants.live_grant(kind=DELETE_POD_GRANTS, username="alice", application_name="web")


# -- sync --------------------------------------------------------------------------------------


def sync(*args) -> str:
    out = StringIO()
    call_command("sync_applications", "--cluster", "lab", *args, stdout=out)
    return out.getvalue()


def owners() -> dict[str, list[str]]:
    return {
        application.name: [team.name for team in application.owner_teams.all()]
        for application in Application.objects.prefetch_related("owner_teams")
    }


def test_sync_takes_owner_teams_from_the_part_of_label(sim, tmp_path):
    seed_demo(sim)
    call_command(
        "import_cluster",
        "lab",
        "--allow-plain-http",
        "--kubeconfig",
        str(sim.kubeconfig(tmp_path / "c")),
    )

    first = sync()
    second = sync()

    assert owners() == {
        "checkout": ["payments"],
        "ledger": ["payments"],
        "api": ["shop"],
        "web": ["shop"],
        "worker": ["shop"],
    }
    assert set(Team.objects.values_list("name", flat=True)) == {"shop", "payments"}
    assert first.strip().endswith("owners set on 5, teams 2 created.")
    assert second.strip().endswith("owners set on 0, teams 0 created.")
    assert Application.objects.filter(owners_source="LABEL").count() == 5


def test_sync_with_another_owner_label_keeps_owners_set_in_the_admin(sim, tmp_path):
    seed_demo(sim)
    call_command(
        "import_cluster",
        "lab",
        "--allow-plain-http",
        "--kubeconfig",
        str(sim.kubeconfig(tmp_path / "c")),
    )
    web = ApplicationFactory(name="web", owners_source=Application.OwnersSource.ADMIN)
    web.owner_teams.add(Team.objects.create(name="platform"))

    sync("--owner-label", "team")

    found = owners()
    assert found["web"] == ["platform"]  # the admin's choice wins over the label
    assert found["api"] == ["storefront"]
    assert found["worker"] == ["fulfilment"]


# -- pages and admin ---------------------------------------------------------------------------


def test_the_application_pages_show_the_owners(client, requester, application, shop):
    client.force_login(requester)

    listing = client.get(reverse("redeploy:applications"))
    detail = client.get(reverse("redeploy:application", args=["web"])).content.decode()

    assert [row.get_cell("owner_teams") for row in listing.context["table"].rows] == ["shop"]
    assert "<dd data-owners>shop</dd>" in detail


def test_owners_picked_in_the_admin_win_over_the_label(client, application):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    team = Team.objects.create(name="platform")
    client.force_login(root)
    url = reverse("admin:redeploy_application_change", args=[application.pk])
    form = {
        "name": "web",
        "tags": "[]",
        "owner_teams": [team.pk],
        "owners_source": "LABEL",
        "bindings-TOTAL_FORMS": "0",
        "bindings-INITIAL_FORMS": "0",
        "bindings-MIN_NUM_FORMS": "0",
        "bindings-MAX_NUM_FORMS": "1000",
    }

    assert client.post(url, form).status_code == 302

    application.refresh_from_db()
    assert application.owners_source == Application.OwnersSource.ADMIN
    assert list(application.owner_teams.all()) == [team]
    listing = client.get(reverse("admin:redeploy_application_changelist")).content.decode()
    assert "platform" in listing


def test_the_demo_seeds_two_teams_that_own_and_approve_their_applications(sim, work_order):
    seed_demo(sim)
    out = StringIO()
    call_command("seed_demo", "--cluster-url", sim.url, "--cluster-token", SIM_TOKEN, stdout=out)

    members = {
        team.name: sorted(user.username for user in team.members.all())
        for team in Team.objects.prefetch_related("members")
    }
    assert members == {"payments": ["dave", "erin"], "shop": ["alice", "bob"]}
    assert owners()["web"] == ["shop"] and owners()["checkout"] == ["payments"]
    assert set(work_order.nodes.values_list("node_type", flat=True)) == {"APPLICATION_OWNER"}
