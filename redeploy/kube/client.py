"""Clients per cluster, and how a call goes out: timeouts, errors, retries, pages.

A client per cluster's stored credentials is built on first use and kept, connections and all,
for the calls that follow: building one and connecting cost more than a call on a warm
connection (against a real API server, a TLS handshake). API and network failures leave
as the product's exceptions (redeploy.exceptions), carrying the API's own message; transient
ones are retried here a bounded number of times with backoff. Credentials never appear in a
message or a log line.
"""

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from itertools import chain

import urllib3
from django.conf import settings
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from ..exceptions import DeploymentNotFound, KubeError, KubeTransientError
from ..models import KubernetesCluster
from .config import kubeconfig_of

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY = 10.0
LIST_PAGE_SIZE = 500
# Clients kept, one per set of cluster credentials; beyond that the least recently used goes.
MAX_CLIENTS = 32

_clients: OrderedDict[str, ApiClient] = OrderedDict()
_clients_lock = threading.Lock()
# Threads for calls in the background, a pool per cluster (by name; "" for calls of none).
_background: dict[str, ThreadPoolExecutor] = {}


def apps_api(client: ApiClient):
    """The apps/v1 calls on `client`. The client's API classes are imported when first used:
    kubernetes 37 builds each with pydantic's validate_call over hundreds of methods, about 2 s
    a class, which every process that never calls a cluster (the web, manage.py commands, the
    demo's start) would otherwise pay as it starts."""
    from kubernetes.client import AppsV1Api

    return AppsV1Api(client)


def core_api(client: ApiClient):
    """The core/v1 calls on `client` (imported when first used, as in apps_api)."""
    from kubernetes.client import CoreV1Api

    return CoreV1Api(client)


def load_api_classes() -> None:
    """Import the client's API classes now, in a process about to call clusters: a Celery
    worker before its pool forks, so every child inherits them instead of each paying their
    seconds of CPU on its first call."""
    from kubernetes.client import AppsV1Api, CoreV1Api  # noqa: F401


def _forget_clients() -> None:
    # A forked process (a prefork worker) must not use its parent's connections or threads,
    # nor a lock one of those threads may have held at the fork.
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()
    _background.clear()


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
def api_client(cluster: KubernetesCluster, *, watching: bool = False) -> Iterator[ApiClient]:
    """The cluster's client, shared and kept open (thread-safe); use it as a context manager.

    Changed credentials get a new client. Tokens that expire (exec plugins, in-cluster service
    account tokens) are refreshed by the client itself before a request. `watching`: the
    client that follows rollouts, with connections of its own: a watch cut short leaves its
    connection dead, and the next restart must not be the one to find it in the pool.
    """
    key = _credentials_key(cluster) + (":watching" if watching else "")
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
            kube_config.load_incluster_config(client_configuration=configuration)
        else:
            kubeconfig, context = kubeconfig_of(cluster)
            kube_config.load_kube_config_from_dict(
                kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except kube_config.ConfigException as error:
        raise KubeError(
            f"The configuration of cluster {cluster.name} is not usable: {error}"
        ) from error
    if configuration.host.lower().startswith("http://") and not cluster.allow_plain_http:
        # Its token would cross the network in clear text: only an explicit opt-in allows it.
        raise KubeError(
            f"Cluster {cluster.name} speaks plain HTTP ({configuration.host}); use https://, "
            "or allow plain HTTP on the cluster."
        )
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
    """Run one of this package's calls (`get_deployment`, `restart_deployment`) on a thread.

    The calls of a batch of redeploys go out side by side, KUBERNETES_PARALLEL_REQUESTS at a
    time per cluster (the `cluster` argument), over the client's pooled connections: a cluster
    that hangs holds its own threads, never the ones another cluster's calls need. One
    redeploy reads its Deployment while its transaction commits. Only API calls run there:
    database work stays on the caller's thread. The future raises what the call raises.
    """
    cluster = kwargs.get("cluster")
    name = cluster.name if cluster is not None else ""
    with _clients_lock:
        executor = _background.get(name)
        if executor is None:
            executor = _background[name] = ThreadPoolExecutor(
                max_workers=settings.KUBERNETES_PARALLEL_REQUESTS,
                thread_name_prefix=f"kube-{name}",
            )
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


GATEWAY_ANSWERS = (502, 503, 504)
# What a 404 of the named object becomes: a call names a Deployment unless it says otherwise.
NotFoundError = Callable[[], KubeError] | None


def _translate(error: ApiException | urllib3.exceptions.HTTPError, *, not_found: NotFoundError):
    if isinstance(error, urllib3.exceptions.HTTPError):
        # Refused or never connected: nothing reached the API. Anything else may have.
        never_sent = urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
        return KubeTransientError(str(error), in_doubt=not isinstance(error, never_sent))
    message = _status_message(error)
    if error.status == 404 and not_found is not None:
        return not_found()
    if error.status == 429 or 500 <= (error.status or 0) <= 599:
        # A gateway's answer (502, 503, 504) may come after the apiserver behind it applied
        # the change, as a timeout may.
        return KubeTransientError(
            message, in_doubt=error.status in GATEWAY_ANSWERS, retry_after=_retry_after(error)
        )
    return KubeError(message)


def _call(function, *, not_found: NotFoundError = DeploymentNotFound):
    """One API call, its failure translated (no retry); `not_found`: what a 404 means, None for
    a LIST (its 404 is a missing API, a plain KubeError)."""
    try:
        return function()
    except (ApiException, urllib3.exceptions.HTTPError) as error:
        raise _translate(error, not_found=not_found) from error


class _Attempts:
    """The bounded attempts of one call (KUBERNETES_RETRY_ATTEMPTS): each transient failure is
    logged and followed by the backoff before the next attempt, and remembered, with whether
    any failed attempt may have reached the API (for a write: may have been applied)."""

    def __init__(self, what: str):
        self.what = what
        self.total = max(1, settings.KUBERNETES_RETRY_ATTEMPTS)
        self.in_doubt = False
        self.last: KubeTransientError | None = None

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, self.total + 1))

    def failed(self, attempt: int, error: KubeTransientError) -> None:
        self.last = error
        self.in_doubt = self.in_doubt or error.in_doubt
        logger.warning(
            "%s failed (%s); attempt %d of %d", self.what, error.message, attempt, self.total
        )
        if attempt < self.total:
            delay = settings.KUBERNETES_RETRY_BACKOFF * 2 ** (attempt - 1)
            time.sleep(min(max(delay, error.retry_after), MAX_RETRY_DELAY))


def _with_retries(function, *, what: str, not_found: NotFoundError = DeploymentNotFound):
    """A read, retried on transient failures with exponential backoff (bounded)."""
    attempts = _Attempts(what)
    for attempt in attempts:
        try:
            return _call(function, not_found=not_found)
        except KubeTransientError as error:
            attempts.failed(attempt, error)
    raise attempts.last


def _read_page(
    list_page, *, token: str | None, label_selector: str, what: str, raw: bool
) -> tuple[list, str | None, str]:
    """One page of a LIST (LIST_PAGE_SIZE items): its items, the continue token and its
    resourceVersion; `raw`: as the API's JSON, not the client's models."""
    page = _with_retries(
        lambda: list_page(
            label_selector=label_selector or None,
            limit=LIST_PAGE_SIZE,
            _continue=token,
            _request_timeout=_timeout(),
            _preload_content=not raw,
        ),
        what=what,
        not_found=None,
    )
    if raw:
        page = json.loads(page.data)
        meta = page.get("metadata") or {}
        return page.get("items") or [], meta.get("continue"), meta.get("resourceVersion") or ""
    meta = page.metadata
    if meta is None:
        return page.items or [], None, ""
    return page.items or [], meta._continue, meta.resource_version or ""


def _pages(list_page, *, label_selector: str, what: str, raw: bool = False) -> Iterator[list]:
    """The items of a LIST, page by page. While the caller takes a page the next is on its way
    (on the background threads), so a sync writes one page while the API server reads the next."""
    read = partial(_read_page, list_page, label_selector=label_selector, what=what, raw=raw)
    items, token, _version = read(token=None)
    while token:
        ahead = in_background(read, token=token)
        yield items
        items, token, _version = ahead.result()
    yield items


def _all_pages(list_page, *, label_selector: str, what: str, raw: bool = False) -> list:
    """Every item of a LIST, read page by page (see _pages)."""
    return list(
        chain.from_iterable(_pages(list_page, label_selector=label_selector, what=what, raw=raw))
    )


def _all_pages_at(
    list_page, *, label_selector: str, what: str, raw: bool = False
) -> tuple[list, str]:
    """Every item of a LIST with the list's resourceVersion (a watch resumes after it): the
    first page's, since the later ones belong to its snapshot."""
    read = partial(_read_page, list_page, label_selector=label_selector, what=what, raw=raw)
    items, token, version = read(token=None)
    while token:
        more, token, _version = read(token=token)
        items.extend(more)
    return items, version
