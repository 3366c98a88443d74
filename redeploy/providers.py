"""The APPLICATION_REDEPLOY entry provider (the manual's ApplicationRedeployTicketEntryProvider)."""

from cratos.exceptions import ValidationFailed
from tickets.providers import TicketEntryProvider, register

from . import authorization
from .audit import Action, record_event
from .models import Application, render_tags


class ApplicationRedeployTicketEntryProvider(TicketEntryProvider):
    business_type = "APPLICATION"
    ticket_key = "APPLICATION_REDEPLOY"
    table_headers = ["Application Name", "Tags"]

    def resolve(self, *, names: list[str]) -> list[Application]:
        found = {app.name: app for app in Application.objects.filter(name__in=names)}
        missing = [name for name in names if name not in found]
        if missing:
            raise ValidationFailed(f"Unknown application: {', '.join(sorted(missing))}")
        return [found[name] for name in names]

    def snapshot(self, *, target: Application) -> tuple[str, dict]:
        return target.name, {"name": target.name, "tags": list(target.tags)}

    def table_row(self, *, content: dict) -> list[str]:
        return [content["name"], render_tags(content.get("tags", []))]

    def on_approved(self, *, ticket, entry) -> None:
        token = authorization.mint(
            username=ticket.applicant.get_username(),
            application_name=entry.name,
            ticket_id=ticket.pk,
            ticket_no=ticket.ticket_no,
            ttl_seconds=ticket.work_order.authorization_ttl_seconds,
        )
        entry.authorization_expires_at = token.expires
        record_event(
            action=Action.AUTHORIZATION_MINTED,
            actor=ticket.applicant,
            ticket=ticket,
            application_name=entry.name,
            message=f"Authorization for {entry.name} valid until {token.expires.isoformat()}",
        )


register(ApplicationRedeployTicketEntryProvider())
