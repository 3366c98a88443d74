"""Watching Deployments as `kubectl rollout status` does: one watch per namespace, resumed by
resourceVersion, bounded in time, with bookmarks; when the API answers 410 Gone (its history
was compacted past our resourceVersion) the namespace is LISTed again and watched from there.

Each watch streams on a thread of its own into one queue, which the caller drains on its
thread: database work stays there, as with in_background.
"""

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import urllib3
from kubernetes import watch
from kubernetes.client import AppsV1Api, V1Deployment
from kubernetes.client.exceptions import ApiException

from ..models import KubernetesCluster
from .client import _all_pages, _timeout, _translate, api_client

logger = logging.getLogger(__name__)

GONE = 410
# Seconds a client waits on a watch beyond the timeout the API server was asked to keep.
READ_MARGIN = 10.0


@dataclass(frozen=True)
class Change:
    """What a watch of one namespace said: a Deployment as it now stands (`deployment`; None
    once `deleted`), a bookmark (neither), that our resourceVersion expired, or `trouble`; and
    the resourceVersion to resume after."""

    cluster_name: str
    namespace: str
    name: str = ""
    deployment: V1Deployment | None = None
    deleted: bool = False
    resource_version: str = ""
    expired: bool = False
    trouble: str = ""
    ended: bool = False  # the watch is over (its timeout, expiry, or trouble)


def _name_selector(names: Sequence[str]) -> str | None:
    # One Deployment: the API server sends nothing of the others (what kubectl asks for).
    return f"metadata.name={names[0]}" if len(names) == 1 else None


def list_namespace(
    *, cluster: KubernetesCluster, namespace: str, names: Sequence[str]
) -> tuple[list[V1Deployment], str]:
    """The Deployments named `names` in the namespace as they stand, with the list's
    resourceVersion to watch from (one LIST, paged)."""
    versions: list[str] = []
    with api_client(cluster) as client:
        apps = AppsV1Api(client)

        def page(**kwargs):
            result = apps.list_namespaced_deployment(
                namespace, field_selector=_name_selector(names), **kwargs
            )
            # Later pages belong to the first one's snapshot: its version is the list's.
            versions.append(result.metadata.resource_version)
            return result

        items = _all_pages(page, label_selector="", what=f"LIST deployments of {namespace}")
    wanted = set(names)
    return [item for item in items if item.metadata.name in wanted], versions[0]


class Watches:
    """The watches of one follow-up task, each ending by `seconds` after it starts at most.
    Use as a context manager: leaving it stops the watches still open."""

    def __init__(self):
        self._changes: queue.Queue[Change] = queue.Queue()
        self._open: dict[tuple[str, str], watch.Watch] = {}
        self._lock = threading.Lock()
        self._streams = 0  # started and not yet seen to end (the caller's thread counts)

    def start(
        self,
        *,
        cluster: KubernetesCluster,
        namespace: str,
        names: Sequence[str],
        resource_version: str,
        seconds: float,
    ) -> None:
        stream = watch.Watch()
        self._streams += 1
        with self._lock:
            self._open[cluster.name, namespace] = stream
        threading.Thread(
            target=self._stream,
            kwargs={
                "stream": stream,
                "cluster": cluster,
                "namespace": namespace,
                "names": list(names),
                "resource_version": resource_version,
                "seconds": max(1, round(seconds)),
            },
            name=f"watch-{namespace}",
            daemon=True,
        ).start()

    def _stream(self, *, stream, cluster, namespace, names, resource_version, seconds) -> None:
        last, expired, trouble = resource_version, False, ""
        try:
            with api_client(cluster) as client:
                events = stream.stream(
                    partial(AppsV1Api(client).list_namespaced_deployment, namespace),
                    field_selector=_name_selector(names),
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=seconds,
                    _request_timeout=(_timeout()[0], seconds + READ_MARGIN),
                )
                for event in events:
                    last = stream.resource_version or last
                    self._changes.put(_change(cluster.name, namespace, event, last))
        except ApiException as error:
            expired = error.status == GONE
            trouble = "" if expired else _trouble(error)
        except Exception as error:  # the stream broke (or stop() cut it): the next task resumes
            trouble = _trouble(error)
        with self._lock:
            if self._open.get((cluster.name, namespace)) is stream:
                del self._open[cluster.name, namespace]
        self._changes.put(
            Change(
                cluster.name,
                namespace,
                resource_version=last,
                expired=expired,
                trouble=trouble,
                ended=True,
            )
        )

    def changes(self, *, until: float) -> Iterator[Change]:
        """The changes as they come, until time.monotonic() reaches `until` or every watch
        started has ended."""
        while self._streams:
            try:
                change = self._changes.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return
            if change.ended:
                self._streams -= 1
            yield change

    def __enter__(self) -> "Watches":
        return self

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            streams = list(self._open.values())
        for stream in streams:
            stream.stop()


def _change(cluster_name: str, namespace: str, event: dict, resource_version: str) -> Change:
    if event["type"] == "BOOKMARK":
        return Change(cluster_name, namespace, resource_version=resource_version)
    deployment = event["object"]
    deleted = event["type"] == "DELETED"
    return Change(
        cluster_name,
        namespace,
        name=deployment.metadata.name,
        deployment=None if deleted else deployment,
        deleted=deleted,
        resource_version=resource_version,
    )


def _trouble(error: Exception) -> str:
    if isinstance(error, ApiException | urllib3.exceptions.HTTPError):
        return _translate(error, not_found=None).message
    logger.warning("A watch of Deployments ended: %r", error)
    return str(error) or error.__class__.__name__
