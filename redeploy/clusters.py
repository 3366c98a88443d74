"""Registering clusters, from a kubeconfig or as the one the product runs in, with an audit
event in the transaction of the change. Applications come from their Deployments in
application_sync.py."""

from pathlib import Path

from django.db import transaction

from cratos.audit.recorder import Action, record_event
from cratos.exceptions import ValidationFailed

from . import kube
from .models import KubernetesCluster


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
    *,
    name: str,
    kubeconfig_path: str | Path,
    context: str | None = None,
    allow_plain_http: bool = False,
    actor=None,
) -> tuple[KubernetesCluster, bool]:
    """Register or update the cluster NAME from one context of a kubeconfig file. A plain
    http:// server is refused unless `allow_plain_http`: its token would travel in clear text."""
    name = _cluster_name(name)
    credentials = kube.read_kubeconfig(Path(kubeconfig_path), context)
    if credentials.server.lower().startswith("http://") and not allow_plain_http:
        raise ValidationFailed(
            f"The server of this context speaks plain HTTP ({credentials.server}): use https://, "
            "or allow plain HTTP explicitly (--allow-plain-http)."
        )
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
        allow_plain_http=allow_plain_http,
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
