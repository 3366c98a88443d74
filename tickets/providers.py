"""Entry providers: what a kind of work order puts on a ticket and what approval grants.

The core knows tickets, nodes and decisions; a provider, registered under
(business type, ticket key), knows its entries. New kinds of work order plug in here.
"""

from typing import Any, ClassVar

from cratos.exceptions import ValidationFailed


class TicketEntryProvider:
    business_type: ClassVar[str]
    ticket_key: ClassVar[str]
    table_headers: ClassVar[list[str]]

    def resolve(self, *, names: list[str]) -> list[Any]:
        """The objects that `names` designate; refuse unknown ones."""
        raise NotImplementedError

    def snapshot(self, *, target: Any) -> tuple[str, dict]:
        """(entry name, frozen content) of a target, as the ticket will show it forever."""
        raise NotImplementedError

    def table_row(self, *, content: dict) -> list[str]:
        raise NotImplementedError

    def on_approved(self, *, ticket, entry) -> None:
        """Grant what the approved entry asks for (runs inside the approval's transaction)."""
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
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
