"""The work orders of the Kubernetes side, registered with tickets: APPLICATION_REDEPLOY (the
manual's ApplicationRedeployTicketEntryProvider) with its grant kind, the manual's
ApplicationRedeployTokenHolder keys, and APPLICATION_DELETE_POD with its own."""

from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from cratos.exceptions import DomainError, ValidationFailed
from tickets.grants import GrantKind
from tickets.providers import EntrySnapshot, TicketEntryProvider, register, render_tags

from .models import Application, DeploymentBinding, PodDeletionTarget, RedeployTarget
from .rules import pod_delete_refusal, redeploy_refusal

REDEPLOY_GRANTS = GrantKind(
    work_order_key="APPLICATION_REDEPLOY",
    key_format="APPLICATION:REDEPLOY:TOKEN:USERNAME:{username}:APPLICATION_NAME:{application_name}",
    held_key_format="APPLICATION:REDEPLOY:HELD:OPERATION:{operation_id}",
)
DELETE_POD_GRANTS = GrantKind(
    work_order_key="APPLICATION_DELETE_POD",
    key_format=(
        "APPLICATION:DELETE:POD:TOKEN:USERNAME:{username}:APPLICATION_NAME:{application_name}"
    ),
    held_key_format="APPLICATION:DELETE:POD:HELD:OPERATION:{operation_id}",
)


class ApplicationEntryProvider(TicketEntryProvider):
    """Entries that name applications (business type APPLICATION), shown as the manual's
    `| Application Name | Tags |` table."""

    business_type = "APPLICATION"
    table_headers = ["Application Name", "Tags"]

    def choices(self) -> QuerySet[Application]:
        return Application.objects.order_by("name")

    def snapshots(self, *, names: list[str]) -> list[EntrySnapshot]:
        found = {app.name: app for app in Application.objects.filter(name__in=names)}
        missing = [name for name in names if name not in found]
        if missing:
            raise ValidationFailed(f"Unknown application: {', '.join(sorted(missing))}")
        return [
            EntrySnapshot(name=name, content={"name": name, "tags": list(found[name].tags)})
            for name in names
        ]

    def table_row(self, *, content: dict) -> list[str]:
        return [content["name"], render_tags(content.get("tags", []))]

    def targets_html(self, *, entries_of: dict[int, list]) -> dict[int, str]:
        """Each ticket's entries with the Deployments they are bound to: one query for all."""
        names = {entry.name for entries in entries_of.values() for entry in entries}
        bindings = {}
        for binding in (
            DeploymentBinding.objects.select_related("application", "cluster")
            .filter(application__name__in=names)
            .order_by("cluster__name", "namespace", "deployment_name")
        ):
            bindings.setdefault(binding.application.name, []).append(binding)
        return {
            ticket_id: render_to_string(
                "redeploy/_approval_targets.html",
                {
                    "caption": self.targets_caption(),
                    "entries": [(entry, bindings.get(entry.name, [])) for entry in entries],
                },
            )
            for ticket_id, entries in entries_of.items()
        }

    def targets_caption(self) -> str:
        raise NotImplementedError


class ApplicationRedeployTicketEntryProvider(ApplicationEntryProvider):
    ticket_key = "APPLICATION_REDEPLOY"
    grant_kind = REDEPLOY_GRANTS

    def action(self, *, application_name: str) -> tuple[str, str]:
        query = urlencode({"application": application_name})
        return _("Redeploy"), f"{reverse('redeploy:request')}?{query}"

    def action_refusal(self, *, user) -> DomainError | None:
        return redeploy_refusal(user=user)

    def targets_caption(self) -> str:
        return _("Where an approval allows a redeploy")

    def records_html(self, *, ticket) -> str:
        records = RedeployTarget.objects.filter(ticket=ticket).order_by("operated_at", "pk")
        return render_to_string("redeploy/_redeploy_records.html", {"redeploy_targets": records})


class ApplicationDeletePodTicketEntryProvider(ApplicationEntryProvider):
    ticket_key = "APPLICATION_DELETE_POD"
    grant_kind = DELETE_POD_GRANTS

    def action(self, *, application_name: str) -> tuple[str, str]:
        query = urlencode({"application": application_name})
        return _("Delete pods"), f"{reverse('redeploy:pod-deletion-new')}?{query}"

    def action_refusal(self, *, user) -> DomainError | None:
        return pod_delete_refusal(user=user)

    def targets_caption(self) -> str:
        return _("Where an approval allows deleting pods")

    def records_html(self, *, ticket) -> str:
        records = PodDeletionTarget.objects.filter(ticket=ticket).order_by("operated_at", "pk")
        return render_to_string("redeploy/_pod_deletion_records.html", {"pod_targets": records})


register(ApplicationRedeployTicketEntryProvider())
register(ApplicationDeletePodTicketEntryProvider())
