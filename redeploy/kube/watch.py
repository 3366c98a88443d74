"""Watching as `kubectl rollout status` does: a namespace's Deployments (a rollout) or a
Deployment's pods (a deleted pod's replacement), resumed by resourceVersion, bounded in time,
with bookmarks; when the API answers 410 Gone (its history was compacted past our
resourceVersion) the caller LISTs again and watches from there.

Objects come as the API's JSON (see rollout.py, pods.py). Each watch streams on a thread of its
own into one queue, which the caller drains on its thread: database work stays there, as with
in_background.
"""

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from ..models import KubernetesCluster
from .client import _all_pages_at, _timeout, _translate, api_client, apps_api, core_api

logger = logging.getLogger(__name__)

GONE = 410
# Seconds a client waits on a watch beyond the timeout the API server was asked to keep.
READ_MARGIN = 10.0


@dataclass(frozen=True)
class Watched:
    """What one watch follows: the `resource` ("deployments" or "pods") of a namespace,
    narrowed by selectors."""

    cluster: KubernetesCluster
    namespace: str
    resource: str
    field_selector: str | None = None
    label_selector: str | None = None


@dataclass(frozen=True)
class Change:
    """What the watch started under `key` said: an object as it now stands (`obj`, the API's
    JSON; None once `deleted`), a bookmark (neither), or that the watch `ended`: its time was
    up, its resourceVersion `expired`, or `trouble`. With the resourceVersion to resume
    after."""

    key: tuple
    name: str = ""
    obj: dict | None = None
    deleted: bool = False
    resource_version: str = ""
    expired: bool = False
    trouble: str = ""
    ended: bool = False


def name_selector(names: Sequence[str]) -> str | None:
    # One Deployment: the API server sends nothing of the others (what kubectl asks for).
    return f"metadata.name={names[0]}" if len(names) == 1 else None


def _collection(client, resource: str):
    """The client's LIST (and watch) call of a namespace's `resource`."""
    if resource == "pods":
        return core_api(client).list_namespaced_pod
    return apps_api(client).list_namespaced_deployment


def list_namespace(
    *, cluster: KubernetesCluster, namespace: str, names: Sequence[str]
) -> tuple[list[dict], str]:
    """The Deployments named `names` in the namespace as they stand (the API's JSON), with the
    list's resourceVersion to watch from (one LIST, paged)."""
    with api_client(cluster, watching=True) as client:
        items, version = _all_pages_at(
            partial(
                apps_api(client).list_namespaced_deployment,
                namespace,
                field_selector=name_selector(names),
            ),
            label_selector="",
            what=f"LIST deployments of {cluster.name}/{namespace}",
            raw=True,
        )
    wanted = set(names)
    return [item for item in items if item["metadata"]["name"] in wanted], version


class Watches:
    """The watches of one follow-up task, each ending by its `seconds` at most. Use as a
    context manager: leaving it closes the watches still open."""

    def __init__(self):
        self._changes: queue.Queue[Change] = queue.Queue()
        self._open: dict[tuple, urllib3.BaseHTTPResponse] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._streams = 0  # started and not yet seen to end (the caller's thread counts)

    def start(self, *, key: tuple, watched: Watched, resource_version: str, seconds: float) -> None:
        """Watch `watched` from `resource_version` for `seconds`; its changes carry `key`."""
        self._streams += 1
        threading.Thread(
            target=self._stream,
            kwargs={
                "key": key,
                "watched": watched,
                "resource_version": resource_version,
                "seconds": max(1, round(seconds)),
            },
            name=f"watch-{watched.namespace}",
            daemon=True,
        ).start()

    def _stream(self, *, key: tuple, watched: Watched, resource_version: str, seconds) -> None:
        last, expired, trouble = resource_version, False, ""
        try:
            with api_client(watched.cluster, watching=True) as client:
                response = _collection(client, watched.resource)(
                    watched.namespace,
                    watch=True,
                    field_selector=watched.field_selector,
                    label_selector=watched.label_selector,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=seconds,
                    _preload_content=False,
                    _request_timeout=(_timeout()[0], seconds + READ_MARGIN),
                )
            if self._opened(key, response):
                for line in iter_resp_lines(response):
                    if not line:
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        status = event["object"]
                        expired = status.get("code") == GONE
                        trouble = "" if expired else status.get("message", "watch error")
                        break
                    last = event["object"]["metadata"].get("resourceVersion") or last
                    self._changes.put(_change(key, event, last))
        except ApiException as error:  # refused at once (a 410 too, from some API servers)
            expired = error.status == GONE
            trouble = "" if expired else _trouble(error)
        except Exception as error:  # the stream broke (or __exit__ cut it): the next task resumes
            trouble = _trouble(error)
        finally:
            self._close(key)
        self._changes.put(
            Change(
                key,
                resource_version=last,
                expired=expired,
                trouble=trouble,
                ended=True,
            )
        )

    def _opened(self, key: tuple, response) -> bool:
        with self._lock:
            if not self._closed:
                self._open[key] = response
                return True
        response.release_conn()
        return False

    def _close(self, key: tuple) -> None:
        with self._lock:
            response = self._open.pop(key, None)
        if response is not None:
            response.release_conn()

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
            self._closed = True
            responses = list(self._open.values())
        for response in responses:
            # Wakes the thread blocked reading it; it then ends on its own.
            response.shutdown()


def _change(key: tuple, event: dict, resource_version: str) -> Change:
    if event["type"] == "BOOKMARK":
        return Change(key, resource_version=resource_version)
    obj = event["object"]
    deleted = event["type"] == "DELETED"
    return Change(
        key,
        name=obj["metadata"]["name"],
        obj=None if deleted else obj,
        deleted=deleted,
        resource_version=resource_version,
    )


def _trouble(error: Exception) -> str:
    if isinstance(error, ApiException | urllib3.exceptions.HTTPError):
        return _translate(error, not_found=None).message
    logger.warning("A watch ended: %r", error)
    return str(error) or error.__class__.__name__
