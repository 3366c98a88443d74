"""The work orders of the Kubernetes side, registered with tickets: APPLICATION_REDEPLOY (the
manual's ApplicationRedeployTicketEntryProvider) with its grant kind, the manual's
ApplicationRedeployTokenHolder keys, and APPLICATION_DELETE_POD with its own."""

from collections.abc import Callable, Iterable

from django.db.models import QuerySet
from django.template.loader import get_template, render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from cratos.exceptions import DomainError, ValidationFailed
from tickets.grants import GrantKind
from tickets.providers import EntrySnapshot, TicketEntryProvider, register, render_tags

from .models import Application, DeploymentBinding, PodDeletionTarget, RedeployTarget
from .rules import (
    ownership_refusal,
    pod_delete_refusal,
    redeploy_refusal,
    requestable_applications,
)

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


# The seed's headers of a ticket's records table, in its words (Chinese pages translate them).
PLACE_HEADERS = ["Instance Name", "Namespace", "Deployment Name"]
# The seed's records tables (the ticket page adds "Result"; notices carry it too).
REDEPLOY_RECORD_HEADERS = [*PLACE_HEADERS, "Redeploy Operation Time"]
POD_DELETION_RECORD_HEADERS = [*PLACE_HEADERS, "Pod Name", "Delete Operation Time"]


def records_html(
    *,
    section_id: str,
    title: str,
    targets: Iterable[RedeployTarget | PodDeletionTarget],
    headers: list[str],
    cells: Callable,
    url_name: str,
    open_label: str,
    empty: str,
) -> str:
    """A ticket's records of one kind, one row per target: where it acted (the place, then the
    kind's own `cells`), when (opening its operation), and how it ended. `headers` name the
    columns before the result's."""
    rows = [
        (
            [target.cluster_name, target.namespace, target.deployment_name, *cells(target)],
            reverse(url_name, args=[target.operation_id]),
            target,
        )
        for target in targets
    ]
    context = {
        "section_id": section_id,
        "title": title,
        "headers": headers,
        "rows": rows,
        "open_label": open_label,
        "empty": empty,
    }
    return render_to_string("redeploy/_records.html", context)


class ApplicationEntryProvider(TicketEntryProvider):
    """Entries that name applications (business type APPLICATION), shown as the manual's
    `| Application Name | Tags |` table."""

    business_type = "APPLICATION"
    table_headers = ["Application Name", "Tags"]

    def choices(self, *, user) -> QuerySet[Application]:
        return requestable_applications(user=user).order_by("name")

    def request_refusal(self, *, user, names: list[str]) -> DomainError | None:
        return ownership_refusal(user=user, application_names=names)

    def owner_team_ids(self, *, names: list[str]) -> dict[str, set[int]]:
        owners = {}
        for name, team_id in Application.owner_teams.through.objects.filter(
            application__name__in=names
        ).values_list("application__name", "team_id"):
            owners.setdefault(name, set()).add(team_id)
        return owners

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
        # Worded once for all the tickets: translated in the template, its seven labels were
        # looked up again for every ticket of the queue, the larger part of this call.
        words = {
            "caption": self.targets_caption(),
            "application": _("Application"),
            "cluster": _("Cluster"),
            "namespace": _("Namespace"),
            "deployment": _("Deployment"),
            "unbound": _(
                "No deployment is bound to this application: there is nothing it could redeploy."
            ),
        }
        template = get_template("redeploy/_approval_targets.html")
        return {
            ticket_id: template.render(
                {
                    "words": words,
                    "entries": [(entry, bindings.get(entry.name, [])) for entry in entries],
                }
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
        return records_html(
            section_id="redeploys",
            title=_("Redeploys"),
            targets=RedeployTarget.objects.filter(ticket=ticket).order_by("operated_at", "pk"),
            headers=REDEPLOY_RECORD_HEADERS,
            cells=lambda target: [],
            url_name="redeploy:operation",
            open_label=_("Open the redeploy"),
            empty=_("No redeploy has been run on this ticket yet."),
        )


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
        return records_html(
            section_id="pod-deletions",
            title=_("Pod deletions"),
            targets=PodDeletionTarget.objects.filter(ticket=ticket).order_by("operated_at", "pk"),
            headers=POD_DELETION_RECORD_HEADERS,
            cells=lambda target: [target.pod_name],
            url_name="redeploy:pod-deletion",
            open_label=_("Open the pod deletion"),
            empty=_("No pod has been deleted on this ticket yet."),
        )


register(ApplicationRedeployTicketEntryProvider())
register(ApplicationDeletePodTicketEntryProvider())
