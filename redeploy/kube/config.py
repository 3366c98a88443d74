"""Cluster credentials: read from a kubeconfig file (to store them), and turned back into a
kubeconfig from a stored cluster row (to build its client). No API call happens here."""

import base64
from dataclasses import dataclass
from pathlib import Path

import yaml

from cratos.exceptions import ValidationFailed

from ..exceptions import KubeError
from ..models import KubernetesCluster

# The keys a context may use and still be stored as plain fields; anything else (exec plugins,
# auth providers, proxies) keeps the context whole as a minified kubeconfig.
_PLAIN_CLUSTER_KEYS = {
    "server",
    "certificate-authority",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
}
_PLAIN_USER_KEYS = {
    "token",
    "tokenFile",
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
}


@dataclass(frozen=True)
class ClusterCredentials:
    """A cluster as a kubeconfig context describes it, ready to be stored.

    Either the plain fields (server, CA, token or client certificate) or, when the context needs
    more than those (exec plugins, auth providers, proxies), the whole minified kubeconfig.
    """

    server: str
    ca_data: str = ""
    insecure_skip_tls_verify: bool = False
    token: str = ""
    client_cert_data: str = ""
    client_key_data: str = ""
    kubeconfig: str = ""
    kubeconfig_context: str = ""

    @property
    def kind(self) -> str:
        if self.kubeconfig:
            return "kubeconfig"
        if self.client_cert_data:
            return "client certificate"
        return "token" if self.token else "no credentials"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig_of(cluster: KubernetesCluster) -> tuple[dict, str | None]:
    """The kubeconfig (and context) that the cluster's stored fields amount to."""
    if cluster.kubeconfig:
        try:
            data = yaml.safe_load(cluster.kubeconfig)
        except yaml.YAMLError as error:
            raise KubeError(
                f"The stored kubeconfig of {cluster.name} is not valid YAML."
            ) from error
        return data, cluster.kubeconfig_context or None
    entry = {"server": cluster.server}
    if cluster.ca_data:
        entry["certificate-authority-data"] = _b64(cluster.ca_data)
    if cluster.insecure_skip_tls_verify:
        entry["insecure-skip-tls-verify"] = True
    user = {}
    if cluster.token:
        user["token"] = cluster.token
    if cluster.client_cert_data:
        user["client-certificate-data"] = _b64(cluster.client_cert_data)
        user["client-key-data"] = _b64(cluster.client_key_data)
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster.name, "cluster": entry}],
        "users": [{"name": cluster.name, "user": user}],
        "contexts": [
            {"name": cluster.name, "context": {"cluster": cluster.name, "user": cluster.name}}
        ],
        "current-context": cluster.name,
    }
    return kubeconfig, cluster.name


def _named(items, name: str, kind: str, path: Path) -> dict:
    for item in items or []:
        if item.get("name") == name:
            return item.get(kind) or {}
    raise ValidationFailed(f"{path} has no {kind} named {name}.")


def _inline(section: dict, key: str, base: Path) -> str:
    """The PEM or token text of `key`, whether given inline (`key-data`) or as a file path."""
    if section.get(f"{key}-data"):
        return base64.b64decode(section[f"{key}-data"]).decode()
    if section.get(key):
        try:
            return (base / section[key]).expanduser().read_text()
        except OSError as error:
            raise ValidationFailed(f"Cannot read {section[key]}: {error.strerror}.") from error
    return ""


def read_kubeconfig(path: Path, context: str | None = None) -> ClusterCredentials:
    """The credentials of one context (default: current-context) of a kubeconfig file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ValidationFailed(f"Cannot read {path}: {error.strerror}.") from error
    except yaml.YAMLError as error:
        raise ValidationFailed(f"{path} is not a valid kubeconfig (YAML).") from error
    if not isinstance(data, dict):
        raise ValidationFailed(f"{path} is not a valid kubeconfig.")
    context = context or data.get("current-context")
    if not context:
        raise ValidationFailed(f"{path} has no current-context; name one with --context.")
    ctx = _named(data.get("contexts"), context, "context", path)
    cluster = _named(data.get("clusters"), ctx.get("cluster"), "cluster", path)
    user = _named(data.get("users"), ctx.get("user"), "user", path) if ctx.get("user") else {}
    if not cluster.get("server"):
        raise ValidationFailed(f"Cluster {ctx.get('cluster')} in {path} has no server.")
    base = path.parent
    ca = _inline(cluster, "certificate-authority", base)
    if set(cluster) <= _PLAIN_CLUSTER_KEYS and set(user) <= _PLAIN_USER_KEYS:
        token = user.get("token") or (
            (base / user["tokenFile"]).read_text().strip() if user.get("tokenFile") else ""
        )
        return ClusterCredentials(
            server=cluster["server"],
            ca_data=ca,
            insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
            token=token,
            client_cert_data=_inline(user, "client-certificate", base),
            client_key_data=_inline(user, "client-key", base),
        )
    # Exec plugins, auth providers, proxies...: keep this one context whole, with the files it
    # names inlined, so the worker needs nothing but the database.
    cluster = {k: v for k, v in cluster.items() if k != "certificate-authority"}
    if ca:
        cluster["certificate-authority-data"] = _b64(ca)
    user = dict(user)
    for key in ("client-certificate", "client-key"):
        text = _inline(user, key, base)
        user.pop(key, None)
        if text:
            user[f"{key}-data"] = _b64(text)
    minified = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": ctx["cluster"], "cluster": cluster}],
        "users": [{"name": ctx.get("user", ""), "user": user}],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
    }
    return ClusterCredentials(
        server=cluster["server"],
        ca_data=ca,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
        kubeconfig=yaml.safe_dump(minified, sort_keys=False),
        kubeconfig_context=context,
    )
