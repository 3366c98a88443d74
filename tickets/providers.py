"""Entry providers: what a kind of work order puts on a ticket and what approval grants.

The core knows tickets, nodes and decisions; a provider, registered under
(business type, ticket key), knows its entries. New kinds of work order plug in here.
"""

from typing import Any, ClassVar, NamedTuple

from cratos.exceptions import ValidationFailed


class EntrySnapshot(NamedTuple):
    """What a ticket keeps of one entry, frozen when it is added."""

    name: str
    content: dict
    application: Any = None  # the live redeploy.Application, for kinds that have one


class TicketEntryProvider:
    business_type: ClassVar[str]
    ticket_key: ClassVar[str]
    table_headers: ClassVar[list[str]]

    def snapshots(self, *, names: list[str]) -> list[EntrySnapshot]:
        """The entries that `names` designate, in that order, as the ticket will show them
        forever; refuse unknown names."""
        raise NotImplementedError

    def table_row(self, *, content: dict) -> list[str]:
        raise NotImplementedError

    def on_approved(self, *, ticket, entries: list, actor) -> None:
        """Grant what the approved entries ask for, all or none, and set each entry's
        `authorization_expires_at`. Runs inside the approval's transaction, as its last step."""
        raise NotImplementedError


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


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        # Any line break (\r too: CommonMark ends a line there) would end the table row.
        return " ".join(str(text).splitlines()).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
