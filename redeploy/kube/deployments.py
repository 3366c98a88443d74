"""Deployments: read them, list them, check and apply a restart (`kubectl rollout restart`)."""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings

from ..exceptions import KubeTransientError, RestartInDoubt
from ..models import KubernetesCluster
from .client import (
    _all_pages,
    _Attempts,
    _call,
    _pages,
    _timeout,
    _with_retries,
    api_client,
    apps_api,
)

if TYPE_CHECKING:  # the model's classes load with the API classes (client.apps_api)
    from kubernetes.client import V1Deployment

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PAUSED_MESSAGE = "can't restart paused deployment (run rollout resume first)"
# A Deployment's spec.progressDeadlineSeconds when it sets none (the API server's default).
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600


@dataclass(frozen=True)
class Restart:
    """What the API returned for an applied restart."""

    restarted_at: str
    generation: int
    resource_version: str


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


def now_restarted_at() -> str:
    """The restartedAt value kubectl writes (RFC 3339), in UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_deployment(*, cluster: KubernetesCluster, namespace: str, name: str) -> "V1Deployment":
    with api_client(cluster) as client:
        apps = apps_api(client)
        return _with_retries(
            lambda: apps.read_namespaced_deployment(name, namespace, _request_timeout=_timeout()),
            what=f"GET deployment {cluster.name}/{namespace}/{name}",
        )


def deployment_pages(
    *, cluster: KubernetesCluster, namespaces: Sequence[str] = ()
) -> Iterator[list[dict]]:
    """Every Deployment of the cluster as the API's JSON, page by page (a page asked for once
    the one before was taken): in the given namespaces, one namespaced LIST each (what a
    namespaced Role allows), or else in all namespaces at once."""
    with api_client(cluster) as client:
        apps = apps_api(client)
        lists = {
            f"LIST deployments of {cluster.name}/{namespace}": partial(
                apps.list_namespaced_deployment, namespace
            )
            for namespace in namespaces
        } or {f"LIST deployments of {cluster.name}": apps.list_deployment_for_all_namespaces}
        for what, list_page in lists.items():
            yield from _pages(list_page, label_selector="", what=what, raw=True)


# A restart's checks read the API's JSON for their two fields: turning a Deployment into the
# client's models costs more than the call itself, and stands between a redeploy and its PATCH.


def check_restart(*, cluster: KubernetesCluster, namespace: str, name: str) -> RestartCheck:
    """The RestartCheck of one Deployment (one GET)."""
    with api_client(cluster) as client:
        response = _with_retries(
            lambda: apps_api(client).read_namespaced_deployment(
                name, namespace, _preload_content=False, _request_timeout=_timeout()
            ),
            what=f"GET deployment {cluster.name}/{namespace}/{name}",
        )
    return RestartCheck.of(json.loads(response.data))


def check_restarts_in(*, cluster: KubernetesCluster, namespace: str) -> dict[str, RestartCheck]:
    """The RestartCheck of every Deployment of the namespace by name (one LIST, paged)."""
    with api_client(cluster) as client:
        items = _all_pages(
            partial(apps_api(client).list_namespaced_deployment, namespace),
            label_selector="",
            what=f"LIST deployments of {cluster.name}/{namespace}",
            raw=True,
        )
    return {item["metadata"]["name"]: RestartCheck.of(item) for item in items}


def restarted_at_of(deployment: "V1Deployment") -> str | None:
    template_meta = deployment.spec.template.metadata if deployment.spec else None
    return ((template_meta and template_meta.annotations) or {}).get(RESTARTED_AT)


def progress_deadline_seconds(deployment: "V1Deployment") -> int:
    spec = deployment.spec
    return (spec and spec.progress_deadline_seconds) or DEFAULT_PROGRESS_DEADLINE_SECONDS


# A restart's answers are read as raw JSON too, as the checks are: models would stand between
# a batch's PATCHes.


def _restart_of(deployment: dict, restarted_at: str) -> Restart:
    meta = deployment["metadata"]
    return Restart(
        restarted_at=restarted_at,
        generation=meta["generation"],
        resource_version=meta.get("resourceVersion") or "",
    )


def _restarted_at_in(deployment: dict) -> str | None:
    template_meta = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return (template_meta.get("annotations") or {}).get(RESTARTED_AT)


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
        apps = apps_api(client)

        def patch() -> dict:
            # Read within _call: a body cut short is the API's trouble like any other.
            return json.loads(
                apps.patch_namespaced_deployment(
                    name,
                    namespace,
                    body,
                    field_manager=settings.KUBERNETES_FIELD_MANAGER,
                    _content_type=STRATEGIC_MERGE_PATCH,
                    _request_timeout=_timeout(),
                    _preload_content=False,
                ).data
            )

        def applied() -> Restart | None:
            deployment = _call(
                lambda: json.loads(
                    apps.read_namespaced_deployment(
                        name, namespace, _request_timeout=_timeout(), _preload_content=False
                    ).data
                )
            )
            if _restarted_at_in(deployment) == restarted_at:
                return _restart_of(deployment, restarted_at)
            return None

        attempts = _Attempts(what)
        for attempt in attempts:
            try:
                return _restart_of(_call(patch), restarted_at)
            except KubeTransientError as error:
                attempts.failed(attempt, error)
            if attempts.in_doubt:
                try:
                    restart = applied()
                except KubeTransientError:
                    continue
                if restart is not None:
                    return restart
        if attempts.in_doubt:
            raise RestartInDoubt(
                f"{attempts.last.message} (the restart may have been applied; it was not repeated)"
            )
        raise attempts.last
