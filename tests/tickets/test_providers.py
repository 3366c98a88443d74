"""Entry providers: the registry, the APPLICATION_REDEPLOY provider, and a new kind plugging in."""

import pytest

from cratos.exceptions import ValidationFailed
from redeploy.providers import ApplicationRedeployTicketEntryProvider
from tests.factories import (
    ApplicationFactory,
    ApprovalNodeFactory,
    GroupFactory,
    RedeployWorkOrderFactory,
    TicketFactory,
    UserFactory,
    WorkOrderFactory,
)
from tickets import providers, selectors, services
from tickets.models import Ticket, TicketEntry
from tickets.providers import EntrySnapshot, TicketEntryProvider, markdown_table, provider_for

pytestmark = pytest.mark.django_db


def test_the_redeploy_work_order_has_the_application_redeploy_provider():
    provider = provider_for(RedeployWorkOrderFactory())
    assert isinstance(provider, ApplicationRedeployTicketEntryProvider)
    assert (provider.business_type, provider.ticket_key) == ("APPLICATION", "APPLICATION_REDEPLOY")
    assert provider.table_headers == ["Application Name", "Tags"]


def test_a_work_order_without_provider_is_refused():
    work_order = WorkOrderFactory(key="UNKNOWN_KIND", business_type="NOTHING")
    with pytest.raises(ValidationFailed, match="No entry provider handles work order UNKNOWN_KIND"):
        provider_for(work_order)
    with pytest.raises(ValidationFailed, match="No entry provider"):
        services.create_ticket(
            applicant=UserFactory(), work_order=work_order, application_names=["x"]
        )


def test_application_snapshots_keep_the_requested_order_and_refuse_unknown_names():
    ApplicationFactory(name="web", tags=[{"key": "team", "value": "shop"}])
    ApplicationFactory(name="api", tags=[])
    provider = ApplicationRedeployTicketEntryProvider()
    assert provider.snapshots(names=["web", "api"]) == [
        EntrySnapshot("web", {"name": "web", "tags": [{"key": "team", "value": "shop"}]}),
        EntrySnapshot("api", {"name": "api", "tags": []}),
    ]
    with pytest.raises(ValidationFailed, match="Unknown application: db, zz"):
        provider.snapshots(names=["zz", "web", "db"])


def test_application_table_row_renders_tags_as_the_seed():
    row = ApplicationRedeployTicketEntryProvider().table_row(
        content={"name": "web", "tags": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]}
    )
    assert row == ["web", "a:1,b:2"]


def test_markdown_table():
    assert markdown_table(["A", "B"], []) == "| A | B |\n| --- | --- |"
    assert markdown_table(["A", "B"], [["x|y", "1\n2"]]) == (
        "| A | B |\n| --- | --- |\n| x\\|y | 1 2 |"
    )


class DatabaseAccessProvider(TicketEntryProvider):
    """A made-up kind of work order: read access to databases, granted on approval."""

    business_type = "DATABASE"
    ticket_key = "DATABASE_ACCESS"
    table_headers = ["Database", "Access"]
    databases = {"orders", "billing"}

    def __init__(self):
        self.granted = []

    def snapshots(self, *, names):
        unknown = sorted(set(names) - self.databases)
        if unknown:
            raise ValidationFailed(f"Unknown database: {', '.join(unknown)}")
        return [EntrySnapshot(name, {"name": name, "access": "read"}) for name in names]

    def table_row(self, *, content):
        return [content["name"], content["access"]]

    def on_approved(self, *, ticket, entries, actor):
        self.granted.append((ticket.pk, [entry.name for entry in entries], actor.username))


@pytest.fixture
def database_access(monkeypatch):
    """DatabaseAccessProvider registered for this test only."""
    monkeypatch.setattr(providers, "_registry", dict(providers._registry))
    return providers.register(DatabaseAccessProvider())


def test_a_new_kind_of_work_order_plugs_in_without_touching_the_core(database_access, redis_client):
    work_order = WorkOrderFactory(key="DATABASE_ACCESS", business_type="DATABASE")
    ApprovalNodeFactory(work_order=work_order, position=1, group=GroupFactory(name="DBAs"))
    alice, dba = UserFactory(username="alice"), UserFactory(username="dba", groups=["DBAs"])

    with pytest.raises(ValidationFailed, match="Unknown database: nope"):
        services.create_ticket(applicant=alice, work_order=work_order, application_names=["nope"])
    ticket = services.create_ticket(
        applicant=alice,
        work_order=work_order,
        application_names=["orders", "billing"],
        reason="Quarter close",
    )
    entry = ticket.entries.first()
    assert (entry.business_type, entry.content) == (
        "DATABASE",
        {"name": "orders", "access": "read"},
    )
    assert selectors.entries_markdown(ticket=ticket) == (
        "| Database | Access |\n| --- | --- |\n| orders | read |\n| billing | read |"
    )

    services.submit_ticket(ticket=ticket, actor=alice)
    ticket = services.approve_ticket(ticket=ticket, approver=dba)
    assert ticket.state == Ticket.State.APPROVED
    assert database_access.granted == [(ticket.pk, ["orders", "billing"], "dba")]
    assert set(ticket.entries.values_list("state", flat=True)) == {TicketEntry.State.AUTHORIZED}
    assert redis_client.keys("*") == []  # no redeploy authorization for another kind


def test_the_redeploy_provider_mints_one_token_per_entry(redis_client):
    approver = UserFactory(groups=["Approvers"])
    ticket = TicketFactory(
        applications=[ApplicationFactory(name="web"), ApplicationFactory(name="api")],
        approved_by=approver,
    )
    username = ticket.applicant.username
    assert sorted(redis_client.keys("*")) == sorted(
        f"APPLICATION:REDEPLOY:TOKEN:USERNAME:{username}:APPLICATION_NAME:{name}".encode()
        for name in ("web", "api")
    )
    assert all(e.authorization_expires_at is not None for e in ticket.entries.all())
