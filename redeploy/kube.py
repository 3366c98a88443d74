"""Everything that talks to Kubernetes. The only module that uses the official client.

A client per cluster's stored credentials is built on first use and kept, connections and all,
for the calls that follow: building one and connecting cost more than a call on a warm
connection (against a real API server, a TLS handshake). API and network failures leave
this module as the product's exceptions (redeploy.exceptions), carrying the API's own message;
transient ones are retried here a bounded number of times with backoff. Credentials never
appear in a message or a log line.
"""

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path

import urllib3
import yaml
from django.conf import settings
from kubernetes import config
from kubernetes.client import ApiClient, AppsV1Api, Configuration, V1Deployment
from kubernetes.client.exceptions import ApiException

from cratos.exceptions import ValidationFailed

from .exceptions import DeploymentNotFound, KubeError, KubeTransientError, RestartInDoubt
from .models import KubernetesCluster

logger = logging.getLogger(__name__)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PAUSED_MESSAGE = "can't restart paused deployment (run rollout resume first)"
# The Progressing condition's reason once the controller gave up (kubectl's TimedOutReason).
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
MAX_RETRY_DELAY = 10.0
LIST_PAGE_SIZE = 500
# A Deployment's spec.progressDeadlineSeconds when it sets none (the API server's default).
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
# Clients kept, one per set of cluster credentials; beyond that the least recently used goes.
MAX_CLIENTS = 32


@dataclass(frozen=True)
class Restart:
    """What the API returned for an applied restart."""

    restarted_at: str
    generation: int
    resource_version: str


class Rollout(StrEnum):
    PROGRESSING = "progressing"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class RestartCheck:
    """What a restart needs to know of a Deployment first: whether it is paused (kubectl refuses
    to restart a paused one), and the deadline its rollout will be held to."""

    paused: bool
    progress_deadline_seconds: int

    @classmethod
    def of(cls, deployment: dict) -> "RestartCheck":
        spec = deployment.get("spec") or {}
        return cls(
            paused=bool(spec.get("paused")),
            progress_deadline_seconds=spec.get("progressDeadlineSeconds")
            or DEFAULT_PROGRESS_DEADLINE_SECONDS,
        )


@dataclass(frozen=True)
class RolloutStatus:
    state: Rollout
    message: str
    replicas: int | None
    updated_replicas: int
    available_replicas: int
    progress_deadline_seconds: int


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


def now_restarted_at() -> str:
    """The restartedAt value kubectl writes (RFC 3339), in UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- clients -------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _kubeconfig_of(cluster: KubernetesCluster) -> tuple[dict, str | None]:
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


_clients: OrderedDict[str, ApiClient] = OrderedDict()
_clients_lock = threading.Lock()


_background: ThreadPoolExecutor | None = None


def _forget_clients() -> None:
    # A forked process (a prefork worker) must not use its parent's connections or threads,
    # nor a lock one of those threads may have held at the fork.
    global _background, _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()
    _background = None


os.register_at_fork(after_in_child=_forget_clients)


def _credentials_key(cluster: KubernetesCluster) -> str:
    """Changes whenever anything that goes into the cluster's client does."""
    fields = (
        cluster.name,
        cluster.server,
        cluster.ca_data,
        cluster.insecure_skip_tls_verify,
        cluster.token,
        cluster.client_cert_data,
        cluster.client_key_data,
        cluster.kubeconfig,
        cluster.kubeconfig_context,
        cluster.in_cluster,
    )
    return hashlib.sha256(json.dumps(fields, default=str).encode()).hexdigest()


@contextmanager
def api_client(cluster: KubernetesCluster) -> Iterator[ApiClient]:
    """The cluster's client, shared and kept open (thread-safe); use it as a context manager.

    Changed credentials get a new client. Tokens that expire (exec plugins, in-cluster service
    account tokens) are refreshed by the client itself before a request.
    """
    key = _credentials_key(cluster)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
    if client is None:
        # Built outside the lock: loading a kubeconfig may run an exec plugin.
        built = _new_client(cluster)
        with _clients_lock:
            client = _clients.setdefault(key, built)
            while len(_clients) > MAX_CLIENTS:
                _clients.popitem(last=False)
    yield client


def _new_client(cluster: KubernetesCluster) -> ApiClient:
    configuration = Configuration()
    try:
        if cluster.in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            kubeconfig, context = _kubeconfig_of(cluster)
            config.load_kube_config_from_dict(
                kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except config.ConfigException as error:
        raise KubeError(
            f"The configuration of cluster {cluster.name} is not usable: {error}"
        ) from error
    # Retries are ours (bounded, with backoff, aware of what a repeated PATCH means).
    configuration.retries = False
    # A connection kept for each call that may be in flight at once (in_background).
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize, settings.KUBERNETES_PARALLEL_REQUESTS
    )
    client = ApiClient(configuration)
    # The product's name in the apiserver's audit log, like kubectl's own user agent.
    client.user_agent = settings.KUBERNETES_FIELD_MANAGER
    return client


def in_background(call: Callable, /, **kwargs) -> Future:
    """Run one of this module's calls (`get_deployment`, `restart_deployment`) on a thread.

    The calls of a batch of redeploys go out side by side (KUBERNETES_PARALLEL_REQUESTS at a
    time, over the client's pooled connections), and one redeploy reads its Deployment while
    its transaction commits. Only API calls run there: database work stays on the caller's
    thread. The future raises what the call raises.
    """
    global _background
    with _clients_lock:
        if _background is None:
            _background = ThreadPoolExecutor(
                max_workers=settings.KUBERNETES_PARALLEL_REQUESTS,
                thread_name_prefix="kube",
            )
        executor = _background
    return executor.submit(call, **kwargs)


def _timeout() -> tuple[float, float]:
    seconds = settings.KUBERNETES_REQUEST_TIMEOUT
    return (seconds, seconds)


# -- errors and retries ---------------------------------------------------------------------


def _status_message(error: ApiException) -> str:
    """The `message` of the API's Status body, else the HTTP status line."""
    try:
        body = json.loads(error.body or "")
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{error.status} {error.reason}".strip()


def _retry_after(error: ApiException) -> float:
    try:
        return float((error.headers or {}).get("Retry-After", 0))
    except (TypeError, ValueError):
        return 0.0


def _translate(error: ApiException | urllib3.exceptions.HTTPError, *, names_deployment: bool):
    if isinstance(error, urllib3.exceptions.HTTPError):
        # Refused or never connected: nothing reached the API. Anything else may have.
        never_sent = urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
        return KubeTransientError(str(error), in_doubt=not isinstance(error, never_sent))
    message = _status_message(error)
    if error.status == 404 and names_deployment:
        return DeploymentNotFound()
    if error.status == 429 or 500 <= (error.status or 0) <= 599:
        # A gateway timeout (504) may come after the apiserver applied the change.
        return KubeTransientError(
            message, in_doubt=error.status == 504, retry_after=_retry_after(error)
        )
    return KubeError(message)


def _call(function, *, names_deployment: bool = True):
    """One API call, its failure translated (no retry)."""
    try:
        return function()
    except (ApiException, urllib3.exceptions.HTTPError) as error:
        raise _translate(error, names_deployment=names_deployment) from error


def _pause(attempt: int, error: KubeTransientError) -> None:
    delay = settings.KUBERNETES_RETRY_BACKOFF * 2 ** (attempt - 1)
    time.sleep(min(max(delay, error.retry_after), MAX_RETRY_DELAY))


def _attempts() -> int:
    return max(1, settings.KUBERNETES_RETRY_ATTEMPTS)


def _with_retries(function, *, what: str, names_deployment: bool = True):
    """A read, retried on transient failures with exponential backoff (bounded)."""
    attempts, attempt = _attempts(), 1
    while True:
        try:
            return _call(function, names_deployment=names_deployment)
        except KubeTransientError as error:
            logger.warning(
                "%s failed (%s); attempt %d of %d", what, error.message, attempt, attempts
            )
            if attempt == attempts:
                raise
            _pause(attempt, error)
            attempt += 1


# -- Deployments ----------------------------------------------------------------------------


def get_deployment(*, cluster: KubernetesCluster, namespace: str, name: str) -> V1Deployment:
    with api_client(cluster) as client:
        apps = AppsV1Api(client)
        return _with_retries(
            lambda: apps.read_namespaced_deployment(name, namespace, _request_timeout=_timeout()),
            what=f"GET deployment {cluster.name}/{namespace}/{name}",
        )


def list_deployments(
    *, cluster: KubernetesCluster, label_selector: str = "", namespaces: Sequence[str] = ()
) -> list[V1Deployment]:
    """The cluster's Deployments matching the label selector: in the given namespaces, one
    namespaced LIST each (what a namespaced Role allows), or else in all namespaces at once."""
    deployments: list[V1Deployment] = []
    with api_client(cluster) as client:
        apps = AppsV1Api(client)
        if not namespaces:
            return _all_pages(
                apps.list_deployment_for_all_namespaces,
                label_selector=label_selector,
                what=f"LIST deployments of {cluster.name}",
            )
        for namespace in namespaces:
            deployments.extend(
                _all_pages(
                    partial(apps.list_namespaced_deployment, namespace),
                    label_selector=label_selector,
                    what=f"LIST deployments of {cluster.name}/{namespace}",
                )
            )
    return deployments


# A restart's checks read the API's JSON for their two fields: turning a Deployment into the
# client's models costs more than the call itself, and stands between a redeploy and its PATCH.


def check_restart(*, cluster: KubernetesCluster, namespace: str, name: str) -> RestartCheck:
    """The RestartCheck of one Deployment (one GET)."""
    with api_client(cluster) as client:
        response = _with_retries(
            lambda: AppsV1Api(client).read_namespaced_deployment(
                name, namespace, _preload_content=False, _request_timeout=_timeout()
            ),
            what=f"GET deployment {cluster.name}/{namespace}/{name}",
        )
    return RestartCheck.of(json.loads(response.data))


def check_restarts_in(*, cluster: KubernetesCluster, namespace: str) -> dict[str, RestartCheck]:
    """The RestartCheck of every Deployment of the namespace by name (one LIST, paged)."""
    with api_client(cluster) as client:
        items = _all_pages(
            partial(AppsV1Api(client).list_namespaced_deployment, namespace),
            label_selector="",
            what=f"LIST deployments of {cluster.name}/{namespace}",
            raw=True,
        )
    return {item["metadata"]["name"]: RestartCheck.of(item) for item in items}


def _all_pages(list_page, *, label_selector: str, what: str, raw: bool = False) -> list:
    """Every item of a LIST, read page by page (LIST_PAGE_SIZE items each); `raw`: as the API's
    JSON, not the client's models."""
    items: list = []
    token = None
    while True:
        page = _with_retries(
            lambda token=token: list_page(
                label_selector=label_selector or None,
                limit=LIST_PAGE_SIZE,
                _continue=token,
                _request_timeout=_timeout(),
                _preload_content=not raw,
            ),
            what=what,
            names_deployment=False,
        )
        if raw:
            page = json.loads(page.data)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
        else:
            items.extend(page.items or [])
            token = page.metadata._continue if page.metadata else None
        if not token:
            return items


def restarted_at_of(deployment: V1Deployment) -> str | None:
    template_meta = deployment.spec.template.metadata if deployment.spec else None
    return ((template_meta and template_meta.annotations) or {}).get(RESTARTED_AT)


def progress_deadline_seconds(deployment: V1Deployment) -> int:
    spec = deployment.spec
    return (spec and spec.progress_deadline_seconds) or DEFAULT_PROGRESS_DEADLINE_SECONDS


def _restart_of(deployment: V1Deployment, restarted_at: str) -> Restart:
    return Restart(
        restarted_at=restarted_at,
        generation=deployment.metadata.generation,
        resource_version=deployment.metadata.resource_version or "",
    )


def restart_deployment(
    *, cluster: KubernetesCluster, namespace: str, name: str, restarted_at: str
) -> Restart:
    """`kubectl rollout restart`: a strategic-merge PATCH of the pod template's restartedAt.

    The caller fixes `restarted_at` beforehand, so a repeated PATCH carries the same value and
    cannot restart twice. A PATCH that failed without an answer may still have been applied:
    before repeating it, and before giving up, the Deployment is read back. If that cannot settle
    the question, RestartInDoubt is raised rather than risking a second restart.
    """
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at}}}}}
    what = f"PATCH deployment {cluster.name}/{namespace}/{name}"
    with api_client(cluster) as client:
        apps = AppsV1Api(client)

        def patch():
            return apps.patch_namespaced_deployment(
                name,
                namespace,
                body,
                field_manager=settings.KUBERNETES_FIELD_MANAGER,
                _content_type=STRATEGIC_MERGE_PATCH,
                _request_timeout=_timeout(),
            )

        def applied() -> Restart | None:
            deployment = _call(
                lambda: apps.read_namespaced_deployment(
                    name, namespace, _request_timeout=_timeout()
                )
            )
            if restarted_at_of(deployment) == restarted_at:
                return _restart_of(deployment, restarted_at)
            return None

        attempts = _attempts()
        in_doubt = False
        for attempt in range(1, attempts + 1):
            try:
                return _restart_of(_call(patch), restarted_at)
            except KubeTransientError as error:
                last = error
                in_doubt = in_doubt or error.in_doubt
                logger.warning(
                    "%s failed (%s); attempt %d of %d", what, error.message, attempt, attempts
                )
            if attempt < attempts:
                _pause(attempt, last)
            if in_doubt:
                try:
                    restart = applied()
                except KubeTransientError:
                    continue
                if restart is not None:
                    return restart
        if in_doubt:
            raise RestartInDoubt(
                f"{last.message} (the restart may have been applied; it was not repeated)"
            )
        raise last


def rollout_status(deployment: V1Deployment) -> RolloutStatus:
    """Where the rollout stands, by the rules of kubectl's DeploymentStatusViewer."""
    name = deployment.metadata.name
    spec, status = deployment.spec, deployment.status
    replicas = spec.replicas if spec else None
    updated = (status and status.updated_replicas) or 0
    total = (status and status.replicas) or 0
    available = (status and status.available_replicas) or 0
    observed = (status and status.observed_generation) or 0

    def result(state: Rollout, message: str) -> RolloutStatus:
        return RolloutStatus(
            state=state,
            message=message,
            replicas=replicas,
            updated_replicas=updated,
            available_replicas=available,
            progress_deadline_seconds=progress_deadline_seconds(deployment),
        )

    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if (deployment.metadata.generation or 0) > observed:
        return result(Rollout.PROGRESSING, "Waiting for deployment spec update to be observed...")
    progressing = next(
        (c for c in (status and status.conditions) or [] if c.type == "Progressing"), None
    )
    if progressing is not None and progressing.reason == TIMED_OUT_REASON:
        return result(Rollout.FAILED, f'deployment "{name}" exceeded its progress deadline')
    if replicas is not None and updated < replicas:
        return result(
            Rollout.PROGRESSING,
            f"{waiting}{updated} out of {replicas} new replicas have been updated...",
        )
    if total > updated:
        return result(
            Rollout.PROGRESSING,
            f"{waiting}{total - updated} old replicas are pending termination...",
        )
    if available < updated:
        return result(
            Rollout.PROGRESSING,
            f"{waiting}{available} of {updated} updated replicas are available...",
        )
    return result(Rollout.COMPLETE, f'deployment "{name}" successfully rolled out')


# -- kubeconfig files -------------------------------------------------------------------------

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
