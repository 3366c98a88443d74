"""Entry providers: what a kind of work order puts on a ticket and what approval grants.

The core knows tickets, nodes, decisions and grants; a provider, registered under
(business type, ticket key) by the app that owns the kind, knows its entries: what may be
named on a ticket, how an entry reads in the seed's table, and how the pages and notices show
where an approval would act and what was done with it. New kinds of work order plug in here.
"""

from typing import ClassVar, NamedTuple

from django.db.models import QuerySet

from cratos.audit.recorder import Action, record_event
from cratos.exceptions import DomainError, ValidationFailed

from . import grants
from .grants import GrantKind


class EntrySnapshot(NamedTuple):
    """What a ticket keeps of one entry, frozen when it is added."""

    name: str
    content: dict


class TicketEntryProvider:
    business_type: ClassVar[str]
    ticket_key: ClassVar[str]
    table_headers: ClassVar[list[str]]
    grant_kind: ClassVar[GrantKind]

    def choices(self, *, user) -> QuerySet:
        """What `user` may name on a ticket: objects with `name` and `tags_display`."""
        raise NotImplementedError

    def request_refusal(self, *, user, names: list[str]) -> DomainError | None:
        """Why `user` may not name some of `names` on a ticket now (asked again at each use:
        create, add, submit)."""
        return None

    def owner_team_ids(self, *, names: list[str]) -> dict[str, set[int]]:
        """{name: ids of the teams that own what it names, now}; a name no team owns is left
        out. APPLICATION_OWNER nodes read it at each decision."""
        return {}

    def snapshots(self, *, names: list[str]) -> list[EntrySnapshot]:
        """The entries that `names` designate, in that order, as the ticket will show them
        forever; refuse unknown names."""
        raise NotImplementedError

    def table_row(self, *, content: dict) -> list[str]:
        raise NotImplementedError

    def action(self, *, application_name: str) -> tuple[str, str]:
        """(label, URL) of the page where the applicant uses a grant for that application."""
        raise NotImplementedError

    def action_refusal(self, *, user) -> DomainError | None:
        """Why `user` may not use a grant of this kind at all (the role its action needs), so
        pages hide an action the service would refuse. By default the grant alone suffices."""
        return None

    def targets_html(self, *, entries_of: dict[int, list]) -> dict[int, str]:
        """{ticket id: where approving those entries would let the applicant act}, for the
        approval pages: one batch for many tickets."""
        raise NotImplementedError

    def records_html(self, *, ticket) -> str:
        """What was done with the ticket's grants (the ticket page's second table)."""
        raise NotImplementedError

    def on_approved(self, *, ticket, entries: list, actor) -> None:
        """Mint one grant per approved entry, all or none, and set each entry's
        `authorization_expires_at`. Runs inside the approval's transaction, as its last step."""
        minted = grants.mint_all(
            kind=self.grant_kind,
            username=ticket.applicant.get_username(),
            application_names=[entry.name for entry in entries],
            ticket_id=ticket.pk,
            ticket_no=ticket.ticket_no,
            ttl_seconds=ticket.work_order.authorization_ttl_seconds,
        )
        for entry, grant in zip(entries, minted, strict=True):
            entry.authorization_expires_at = grant.expires
            record_event(
                action=Action.AUTHORIZATION_MINTED,
                actor=actor,
                ticket=ticket,
                application_name=entry.name,
                message=f"Authorization of {grant.username} for {entry.name} "
                f"valid until {grant.expires.isoformat()}",
            )


_registry: dict[tuple[str, str], TicketEntryProvider] = {}


def register(provider: TicketEntryProvider) -> TicketEntryProvider:
    _registry[(provider.business_type, provider.ticket_key)] = provider
    return provider


def provider_for(work_order) -> TicketEntryProvider:
    try:
        return _registry[(work_order.business_type, work_order.key)]
    except KeyError:
        raise ValidationFailed(
            f"No entry provider handles work order {work_order.key} "
            f"(business type {work_order.business_type})."
        ) from None


def render_tags(tags: list[dict]) -> str:
    """The manual's rendering of an entry's tags: `key:value,key:value`, in their own order."""
    return ",".join(f"{tag['key']}:{tag['value']}" for tag in tags)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        # Any line break (\r too: CommonMark ends a line there) would end the table row.
        return " ".join(str(text).splitlines()).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
