"""Applications from the Deployments of a cluster (`sync_applications`), page by page.

Each page of the LIST is written with the same few bulk statements whatever its size (see
`_Run.take_page`), so a sync costs little more than the LIST itself. The whole sync is one
transaction: a LIST that fails half-way changes nothing, and only a LIST that was read to its
end may tell which Deployments disappeared.

A Deployment that disappeared (from the cluster, or the namespaces synced) is unbound: its
binding is deleted, so nobody can request it any more, and the audit event says how many and
which. Operations already under way keep their targets, which carry the cluster, namespace and
Deployment names themselves; an application left with no binding stays, with its tickets, and
its page says that it runs nowhere. A Deployment that is still there but lost the label keeps
its binding: bindings made in the admin for unlabelled Deployments are not the sync's to undo.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from cratos.audit.recorder import Action, record_event
from cratos.exceptions import NotFound, ValidationFailed
from cratos.teams.models import Team

from . import kube
from .models import Application, DeploymentBinding, KubernetesCluster
from .validators import validate_dns1123_label

DEFAULT_APPLICATION_LABEL = "app.kubernetes.io/name"
# The recommended label for "the higher-level application this one is part of": here, its team.
DEFAULT_OWNER_LABEL = "app.kubernetes.io/part-of"
# The unbound Deployments the audit event names one by one; beyond, it counts them.
UNBOUND_NAMED = 20

OwnerTeams = Application.owner_teams.through


@dataclass
class SyncSummary:
    cluster_name: str
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    deployments: int = 0
    applications_created: int = 0
    applications_updated: int = 0
    applications_unchanged: int = 0
    bindings_created: int = 0
    bindings_present: int = 0
    owners_set: int = 0
    teams_created: int = 0
    pages: int = 0
    unbound: list[str] = field(default_factory=list)  # "namespace/deployment (application)"

    def __str__(self) -> str:
        where = f" (namespaces {', '.join(self.namespaces)})" if self.namespaces else ""
        return (
            f"Cluster {self.cluster_name}{where}: {self.deployments} Deployment(s); applications "
            f"{self.applications_created} created, {self.applications_updated} updated, "
            f"{self.applications_unchanged} unchanged; bindings {self.bindings_created} "
            f"created, {self.bindings_present} already present, {len(self.unbound)} unbound "
            f"(Deployment gone); owners set on {self.owners_set}, teams {self.teams_created} "
            "created."
        )

    def unbound_text(self) -> str:
        named = ", ".join(self.unbound[:UNBOUND_NAMED])
        more = len(self.unbound) - UNBOUND_NAMED
        return f"Unbound: {named}{f' and {more} more' if more > 0 else ''}." if named else ""


# Who else deploys a Deployment, by the marks each tool leaves: a restart here may be undone or
# fought by them, so the pages say so. (Flux's Helm releases are Flux's.)
MANAGERS = (
    ("Argo CD", ("argocd.argoproj.io/instance", "argocd.argoproj.io/tracking-id")),
    ("Flux", ("kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name")),
    ("Helm", ("meta.helm.sh/release-name",)),
)
SEEN_FIELDS = ("desired_replicas", "ready_replicas", "paused", "managed_by", "seen_at")


def managed_by(*, labels: dict, annotations: dict) -> str:
    """Argo CD, Flux or Helm when the Deployment carries that tool's labels or annotations."""
    marks = {**(labels or {}), **(annotations or {})}
    for manager, keys in MANAGERS:
        if any(key in marks for key in keys):
            return manager
    if (labels or {}).get("app.kubernetes.io/managed-by", "").lower() == "helm":
        return "Helm"
    return ""


def _seen_state(deployment: dict) -> dict:
    """What the pages show of a Deployment (its API JSON), as this sync saw it."""
    spec, status, meta = (
        deployment.get("spec") or {},
        deployment.get("status") or {},
        deployment["metadata"],
    )
    replicas = spec.get("replicas")
    return {
        "desired_replicas": 1 if replicas is None else replicas,
        "ready_replicas": status.get("readyReplicas") or 0,
        "paused": bool(spec.get("paused")),
        "managed_by": managed_by(labels=meta.get("labels"), annotations=meta.get("annotations")),
        "seen_at": timezone.now(),
    }


def _synced_tags(current: list[dict], labels: dict[str, str]) -> list[dict]:
    """The application's tags with the labels' values set (other tags kept, order kept)."""
    tags = [dict(tag) for tag in current]
    for key, value in labels.items():
        tag = next((tag for tag in tags if tag["key"] == key), None)
        if tag is None:
            tags.append({"key": key, "value": value})
        else:
            tag["value"] = value
    return tags


def _namespaces(namespaces: Sequence[str]) -> tuple[str, ...]:
    """The namespaces, stripped, validated and without repeats (in the order given)."""
    cleaned = tuple(dict.fromkeys(namespace.strip() for namespace in namespaces))
    for namespace in cleaned:
        try:
            validate_dns1123_label(namespace)
        except ValidationError as error:
            raise ValidationFailed(f"Namespace {namespace!r}: {error.messages[0]}") from None
    return cleaned


@dataclass
class _Run:
    """One sync under way: what earlier pages found, so that an application whose Deployments
    span pages ends as if all had been read at once (the first Deployment's label values win,
    its owners are all its Deployments' teams) and is counted once."""

    cluster: KubernetesCluster
    label: str
    owner_label: str
    summary: SyncSummary
    # (namespace, Deployment name, application id) -> binding id, in the scope synced.
    bindings: dict[tuple[str, str, int], int]
    seen: set[tuple[str, str]] = field(default_factory=set)  # every Deployment listed
    # (namespace, Deployment name) -> what the pages show of it (_seen_state).
    states: dict[tuple[str, str], dict] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # application -> set
    owners: dict[str, set[str]] = field(default_factory=dict)  # application -> team names
    outcomes: dict[str, str] = field(default_factory=dict)  # application -> created/updated/..
    owners_set: set[str] = field(default_factory=set)
    admin_owned: set[str] = field(default_factory=set)  # applications whose owners stay

    def take_page(self, page: list[dict]) -> None:
        """Write what one page of Deployments says, in at most 8 statements."""
        self.summary.pages += 1
        by_application: dict[str, list[dict]] = {}
        for deployment in page:
            meta = deployment["metadata"]
            self.seen.add((meta["namespace"], meta["name"]))
            self.states[(meta["namespace"], meta["name"])] = _seen_state(deployment)
            if name := (meta.get("labels") or {}).get(self.label, ""):
                by_application.setdefault(name, []).append(meta)
        self.summary.deployments += sum(len(metas) for metas in by_application.values())
        if not by_application:
            return
        applications = self._applications(by_application)
        self._owners(by_application, applications)
        self._bindings(by_application, applications)

    def _new_labels(self, name: str, metas: list[dict]) -> dict[str, str]:
        """The labels this page adds to the application: keys no earlier Deployment set."""
        known = self.labels.setdefault(name, {})
        added: dict[str, str] = {}
        for meta in metas:
            for key, value in (meta.get("labels") or {}).items():
                if key != self.label and key not in known and key not in added:
                    added[key] = value
        known.update(added)
        return added

    def _applications(self, by_application: dict[str, list[dict]]) -> dict[str, int]:
        """The page's applications by name (their ids), created or their tags updated in one
        upsert."""
        rows = (
            Application.objects.select_for_update()
            .filter(name__in=by_application)
            .values_list("name", "pk", "tags", "owners_source")
        )
        ids, tags_of = {}, {}
        for name, pk, tags, owners_source in rows:
            ids[name], tags_of[name] = pk, tags
            if owners_source == Application.OwnersSource.ADMIN:
                self.admin_owned.add(name)
        written: list[Application] = []
        for name, metas in by_application.items():
            labels = self._new_labels(name, metas)
            if name not in ids:
                self._outcome(name, "created")
                description = f"Synced from cluster {self.cluster.name}"
                tags = _synced_tags([], labels)
                written.append(Application(name=name, description=description, tags=tags))
                continue
            tags = _synced_tags(tags_of[name], labels)
            if tags == tags_of[name]:
                self._outcome(name, "unchanged")
            else:
                self._outcome(name, "updated")
                written.append(Application(name=name, tags=tags))
        if written:
            # Conflicts are the existing ones (or one a concurrent sync just created): only
            # their tags change; the primary keys come back either way.
            Application.objects.bulk_create(
                written,
                update_conflicts=True,
                unique_fields=["name"],
                update_fields=["tags", "updated_at"],
            )
        return ids | {application.name: application.pk for application in written}

    def _outcome(self, name: str, outcome: str) -> None:
        # An application is counted once: created wins over updated over unchanged.
        order = ("unchanged", "updated", "created")
        previous = self.outcomes.get(name, "unchanged")
        self.outcomes[name] = max(previous, outcome, key=order.index)

    def _owners(self, by_application: dict[str, list[dict]], applications: dict[str, int]) -> None:
        """Owner teams from the `owner_label` values (teams created when missing), unless the
        admin set them; an application none of whose Deployments is labelled keeps its own."""
        wanted: dict[int, set[str]] = {}
        for name, metas in by_application.items():
            teams = {(meta.get("labels") or {}).get(self.owner_label, "") for meta in metas}
            teams = self.owners.setdefault(name, set()) | (teams - {""})
            self.owners[name] = teams
            if teams and name not in self.admin_owned:
                wanted[applications[name]] = teams
        if not wanted:
            return
        names = set().union(*wanted.values())
        found = dict(Team.objects.filter(name__in=names).values_list("name", "pk"))
        missing = [Team(name=name) for name in sorted(names - set(found))]
        if missing:
            # A team a concurrent sign-in created meanwhile is taken as it is.
            Team.objects.bulk_create(
                missing, update_conflicts=True, unique_fields=["name"], update_fields=["name"]
            )
            self.summary.teams_created += len(missing)
            found |= {team.name: team.pk for team in missing}
        want = {(app, found[team]) for app, teams in wanted.items() for team in teams}
        rows = OwnerTeams.objects.filter(application_id__in=wanted).values_list(
            "pk", "application_id", "team_id"
        )
        have = {(app, team): pk for pk, app, team in rows}
        stale = {key: pk for key, pk in have.items() if key not in want}
        if stale:
            OwnerTeams.objects.filter(pk__in=stale.values()).delete()
        if added := want - set(have):
            OwnerTeams.objects.bulk_create(
                [OwnerTeams(application_id=app, team_id=team) for app, team in added],
                ignore_conflicts=True,
            )
        changed = {app for app, _ in added | set(stale)}
        self.owners_set |= {name for name, pk in applications.items() if pk in changed}

    def _bindings(
        self, by_application: dict[str, list[dict]], applications: dict[str, int]
    ) -> None:
        """A binding per (namespace, Deployment) of each application, with the Deployment's state
        as seen now, written in one upsert."""
        rows = []
        for name, metas in by_application.items():
            application_id = applications[name]
            for meta in metas:
                if (meta["namespace"], meta["name"], application_id) in self.bindings:
                    self.summary.bindings_present += 1
                else:
                    self.summary.bindings_created += 1
                rows.append(
                    DeploymentBinding(
                        application_id=application_id,
                        cluster_id=self.cluster.pk,
                        namespace=meta["namespace"],
                        deployment_name=meta["name"],
                        **self.states[(meta["namespace"], meta["name"])],
                    )
                )
        DeploymentBinding.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["application", "cluster", "namespace", "deployment_name"],
            update_fields=list(SEEN_FIELDS),
        )

    def unbind_gone(self) -> None:
        """Delete the bindings, read before the LIST, whose Deployment it did not show."""
        gone = {pk: key for key, pk in self.bindings.items() if (key[0], key[1]) not in self.seen}
        if not gone:
            return
        names = dict(
            Application.objects.filter(pk__in={key[2] for key in gone.values()}).values_list(
                "pk", "name"
            )
        )
        # Targets of operations under way keep their names; their binding becomes empty.
        DeploymentBinding.objects.filter(pk__in=gone).delete()
        self.summary.unbound = sorted(
            f"{namespace}/{deployment} ({names[application]})"
            for namespace, deployment, application in gone.values()
        )

    def finish(self) -> None:
        counts = {outcome: 0 for outcome in ("created", "updated", "unchanged")}
        for outcome in self.outcomes.values():
            counts[outcome] += 1
        self.summary.applications_created = counts["created"]
        self.summary.applications_updated = counts["updated"]
        self.summary.applications_unchanged = counts["unchanged"]
        self.summary.owners_set = len(self.owners_set)


def sync_applications(
    *,
    cluster_name: str,
    label: str = DEFAULT_APPLICATION_LABEL,
    owner_label: str = DEFAULT_OWNER_LABEL,
    namespaces: Sequence[str] = (),
    actor=None,
) -> SyncSummary:
    """One application per distinct value of `label` among the cluster's Deployments, tagged
    with their labels, owned by the teams their `owner_label` names, and a binding per
    (namespace, Deployment); the bindings of Deployments that disappeared are deleted.
    Idempotent.

    With `namespaces`, only those are listed, one namespaced LIST each: what a ServiceAccount
    with namespaced Roles (deploy/) may do; bindings elsewhere are left alone. Without, every
    namespace in one LIST.
    """
    namespaces = _namespaces(namespaces)
    cluster = KubernetesCluster.objects.filter(name=cluster_name).first()
    if cluster is None:
        raise NotFound(f"No cluster is named {cluster_name}.")
    summary = SyncSummary(cluster_name=cluster.name, namespaces=namespaces)
    with transaction.atomic():
        scope = DeploymentBinding.objects.filter(cluster=cluster)
        if namespaces:
            scope = scope.filter(namespace__in=namespaces)
        rows = scope.values_list("namespace", "deployment_name", "application_id", "pk")
        run = _Run(
            cluster=cluster,
            label=label,
            owner_label=owner_label,
            summary=summary,
            bindings={(ns, name, app): pk for ns, name, app, pk in rows},
        )
        for page in kube.deployment_pages(cluster=cluster, namespaces=namespaces):
            run.take_page(page)
        run.unbind_gone()
        run.finish()
        record_event(
            action=Action.APPLICATIONS_SYNCED,
            actor=actor,
            cluster_name=cluster.name,
            message=f"{summary} (label {label}, owner label {owner_label}) "
            f"{summary.unbound_text()}".strip(),
        )
    return summary
