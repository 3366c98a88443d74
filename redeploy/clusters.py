"""Registering clusters (from a kubeconfig, or the one the product runs in) and applications
from the Deployments found there. Each writes its audit event in the transaction of the change.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def _cluster_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the cluster a name.")
    return name


def _register_cluster(
    *, name: str, actor, source: str, **connection
) -> tuple[KubernetesCluster, bool]:
    """Create or update the cluster NAME with every `connection` field, and audit it."""
    cluster, created = KubernetesCluster.objects.select_for_update().get_or_create(name=name)
    for field, value in connection.items():
        setattr(cluster, field, value)
    cluster.save()
    record_event(
        action=Action.CLUSTER_IMPORTED,
        actor=actor,
        cluster_name=name,
        message=f"{'Registered' if created else 'Updated'} {source}",
    )
    return cluster, created


@transaction.atomic
def import_cluster(
    *, name: str, kubeconfig_path: str | Path, context: str | None = None, actor=None
) -> tuple[KubernetesCluster, bool]:
    """Register or update the cluster NAME from one context of a kubeconfig file."""
    name = _cluster_name(name)
    credentials = kube.read_kubeconfig(Path(kubeconfig_path), context)
    return _register_cluster(
        name=name,
        actor=actor,
        source=f"from {kubeconfig_path}: {credentials.server} ({credentials.kind})",
        server=credentials.server,
        ca_data=credentials.ca_data,
        insecure_skip_tls_verify=credentials.insecure_skip_tls_verify,
        token=credentials.token,
        client_cert_data=credentials.client_cert_data,
        client_key_data=credentials.client_key_data,
        kubeconfig=credentials.kubeconfig,
        kubeconfig_context=credentials.kubeconfig_context,
        in_cluster=False,
    )


@transaction.atomic
def import_in_cluster(*, name: str, actor=None) -> tuple[KubernetesCluster, bool]:
    """Register or update the cluster NAME as the one the product runs in: reached with the
    pod's ServiceAccount, so credentials stored by an earlier import are dropped."""
    return _register_cluster(
        name=_cluster_name(name),
        actor=actor,
        source="as in-cluster (the pod's ServiceAccount)",
        server="",
        ca_data="",
        insecure_skip_tls_verify=False,
        token="",
        client_cert_data="",
        client_key_data="",
        kubeconfig="",
        kubeconfig_context="",
        in_cluster=True,
    )


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

    def __str__(self) -> str:
        where = f" (namespaces {', '.join(self.namespaces)})" if self.namespaces else ""
        return (
            f"Cluster {self.cluster_name}{where}: {self.deployments} Deployment(s); applications "
            f"{self.applications_created} created, {self.applications_updated} updated, "
            f"{self.applications_unchanged} unchanged; bindings {self.bindings_created} "
            f"created, {self.bindings_present} already present; owners set on "
            f"{self.owners_set}, teams {self.teams_created} created."
        )


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


# Who else deploys a Deployment, by the marks each tool leaves: a restart here may be undone or
# fought by them, so the pages say so. (Flux's Helm releases are Flux's.)
MANAGERS = (
    ("Argo CD", ("argocd.argoproj.io/instance", "argocd.argoproj.io/tracking-id")),
    ("Flux", ("kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name")),
    ("Helm", ("meta.helm.sh/release-name",)),
)


def managed_by(*, labels: dict, annotations: dict) -> str:
    """Argo CD, Flux or Helm when the Deployment carries that tool's labels or annotations."""
    marks = {**(labels or {}), **(annotations or {})}
    for manager, keys in MANAGERS:
        if any(key in marks for key in keys):
            return manager
    if (labels or {}).get("app.kubernetes.io/managed-by", "").lower() == "helm":
        return "Helm"
    return ""


def _seen_state(deployment) -> dict:
    """What the pages show of a Deployment, as this sync saw it."""
    spec, status, meta = deployment.spec, deployment.status, deployment.metadata
    return {
        "desired_replicas": spec.replicas if spec.replicas is not None else 1,
        "ready_replicas": (status.ready_replicas or 0) if status else 0,
        "paused": bool(spec.paused),
        "managed_by": managed_by(labels=meta.labels, annotations=meta.annotations),
        "seen_at": timezone.now(),
    }


def _sync_owners(
    *, application: Application, deployments: list, owner_label: str, summary: SyncSummary
) -> None:
    """The application's owner teams from its Deployments' `owner_label` values (teams created
    when missing), unless the admin set them. None of them labelled: the owners stay."""
    names = sorted({(d.metadata.labels or {}).get(owner_label, "") for d in deployments} - {""})
    if not names or application.owners_source == Application.OwnersSource.ADMIN:
        return
    teams = []
    for name in names:
        team, created = Team.objects.get_or_create(name=name)
        summary.teams_created += created
        teams.append(team)
    if {team.pk for team in teams} != set(application.owner_teams.values_list("pk", flat=True)):
        application.owner_teams.set(teams)
        summary.owners_set += 1


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
    (namespace, Deployment). Idempotent; never deletes.

    With `namespaces`, only those are listed, one namespaced LIST each: what a ServiceAccount
    with namespaced Roles (deploy/) may do. Without, every namespace in one LIST.
    """
    namespaces = _namespaces(namespaces)
    cluster = KubernetesCluster.objects.filter(name=cluster_name).first()
    if cluster is None:
        raise NotFound(f"No cluster is named {cluster_name}.")
    deployments = sorted(
        kube.list_deployments(cluster=cluster, label_selector=label, namespaces=namespaces),
        key=lambda d: (d.metadata.namespace, d.metadata.name),
    )
    by_application: dict[str, list] = {}
    for deployment in deployments:
        value = (deployment.metadata.labels or {}).get(label, "")
        if value:
            by_application.setdefault(value, []).append(deployment)
    summary = SyncSummary(
        cluster_name=cluster.name, namespaces=namespaces, deployments=len(deployments)
    )
    with transaction.atomic():
        for name, items in sorted(by_application.items()):
            labels: dict[str, str] = {}
            for deployment in items:
                for key, value in (deployment.metadata.labels or {}).items():
                    if key != label:
                        labels.setdefault(key, value)
            application, created = Application.objects.select_for_update().get_or_create(
                name=name,
                defaults={
                    "description": f"Synced from cluster {cluster.name}",
                    "tags": _synced_tags([], labels),
                },
            )
            if created:
                summary.applications_created += 1
            else:
                tags = _synced_tags(application.tags, labels)
                if tags == application.tags:
                    summary.applications_unchanged += 1
                else:
                    application.tags = tags
                    application.save(update_fields=["tags", "updated_at"])
                    summary.applications_updated += 1
            _sync_owners(
                application=application, deployments=items, owner_label=owner_label, summary=summary
            )
            for deployment in items:
                _, created = DeploymentBinding.objects.update_or_create(
                    application=application,
                    cluster=cluster,
                    namespace=deployment.metadata.namespace,
                    deployment_name=deployment.metadata.name,
                    defaults=_seen_state(deployment),
                )
                if created:
                    summary.bindings_created += 1
                else:
                    summary.bindings_present += 1
        record_event(
            action=Action.APPLICATIONS_SYNCED,
            actor=actor,
            cluster_name=cluster.name,
            message=f"{summary} (label {label}, owner label {owner_label})",
        )
    return summary
