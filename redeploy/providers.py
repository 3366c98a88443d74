"""The APPLICATION_REDEPLOY entry provider (the manual's ApplicationRedeployTicketEntryProvider)."""

from cratos.audit.recorder import Action, record_event
from cratos.exceptions import ValidationFailed
from tickets.providers import EntrySnapshot, TicketEntryProvider, register

from . import authorization
from .models import Application, render_tags


class ApplicationRedeployTicketEntryProvider(TicketEntryProvider):
    business_type = "APPLICATION"
    ticket_key = "APPLICATION_REDEPLOY"
    table_headers = ["Application Name", "Tags"]

    def snapshots(self, *, names: list[str]) -> list[EntrySnapshot]:
        found = {app.name: app for app in Application.objects.filter(name__in=names)}
        missing = [name for name in names if name not in found]
        if missing:
            raise ValidationFailed(f"Unknown application: {', '.join(sorted(missing))}")
        return [
            EntrySnapshot(
                name=name,
                content={"name": name, "tags": list(found[name].tags)},
                application=found[name],
            )
            for name in names
        ]

    def table_row(self, *, content: dict) -> list[str]:
        return [content["name"], render_tags(content.get("tags", []))]

    def on_approved(self, *, ticket, entries: list, actor) -> None:
        tokens = authorization.mint_all(
            username=ticket.applicant.get_username(),
            application_names=[entry.name for entry in entries],
            ticket_id=ticket.pk,
            ticket_no=ticket.ticket_no,
            ttl_seconds=ticket.work_order.authorization_ttl_seconds,
        )
        for entry, token in zip(entries, tokens, strict=True):
            entry.authorization_expires_at = token.expires
            record_event(
                action=Action.AUTHORIZATION_MINTED,
                actor=actor,
                ticket=ticket,
                application_name=entry.name,
                message=f"Authorization of {token.username} for {entry.name} "
                f"valid until {token.expires.isoformat()}",
            )


register(ApplicationRedeployTicketEntryProvider())
