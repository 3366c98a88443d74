"""The pods of an application's Deployment: listed live for the requester to pick, and deleted.

A Deployment's selector may also match pods that are not its own (another Deployment with
overlapping labels, a bare pod, a Job), so a pod counts only when its controller is a ReplicaSet
whose controller is this Deployment. Both are matched by uid: a Deployment deleted and created
again under the same name does not claim its predecessor's pods. Pods and ReplicaSets are read as
the API's JSON: turning whole pod specs into the client's models would cost more than the calls.
"""

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from kubernetes.client.models.v1_delete_options import V1DeleteOptions
from kubernetes.client.models.v1_preconditions import V1Preconditions

from cratos.exceptions import NotFound

from ..exceptions import KubeError, KubeTransientError
from ..models import KubernetesCluster
from .client import (
    _all_pages,
    _all_pages_at,
    _Attempts,
    _call,
    _timeout,
    _with_retries,
    api_client,
    apps_api,
    core_api,
)

logger = logging.getLogger(__name__)

POD_DOES_NOT_EXIST = "Pod does not exist"
# matchExpressions' set operators as label selector strings write them (LabelSelectorAsSelector).
_SET_OPERATORS = {"In": "in", "NotIn": "notin"}


def pod_missing_message(name: str) -> str:
    return f"The pod={name} resource does not exist"


class PodNotFound(KubeError, NotFound):
    """No such pod, or none of the Deployment's: both are refused alike."""

    status_code = 404
    code = "pod_not_found"
    default_message = POD_DOES_NOT_EXIST


class PodDeleteInDoubt(KubeTransientError):
    """Every DELETE of a pod failed, one of them in a way that does not tell whether the API
    applied it."""

    code = "delete_in_doubt"


@dataclass(frozen=True)
class PodInfo:
    """One pod of a Deployment, as a requester picks it (what `kubectl get pods` shows)."""

    name: str
    namespace: str
    uid: str  # for delete_pod's precondition: the pod picked is the pod deleted
    phase: str
    ready: bool
    restarts: int
    created_at: datetime
    node_name: str
    deleting: bool  # its deletion was asked for; it is terminating
    replica_set: str

    @classmethod
    def of(cls, pod: dict) -> "PodInfo":
        meta, status = pod["metadata"], pod.get("status") or {}
        conditions = status.get("conditions") or []
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid", ""),
            phase=status.get("phase") or "Unknown",
            ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
            restarts=sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or []),
            created_at=datetime.fromisoformat(meta["creationTimestamp"]),
            node_name=(pod.get("spec") or {}).get("nodeName") or "",
            deleting=bool(meta.get("deletionTimestamp")),
            replica_set=(_controller(pod) or {}).get("name", ""),
        )


@dataclass(frozen=True)
class DeletedPod:
    """What the API answered to a pod's DELETE."""

    name: str
    namespace: str
    uid: str  # "" when only a 404 after a lost answer told that the pod was gone
    # The grace period the pod terminates within, as the API answered (0: removed at once);
    # None when the answer held no pod (a Status, or a 404 after a lost answer).
    grace_period_seconds: int | None


def label_selector_of(selector: dict) -> str:
    """A Deployment's spec.selector (the API's JSON) as a label selector string: matchLabels
    and matchExpressions, all of them required (comma = AND)."""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        if operator in _SET_OPERATORS:
            values = ",".join(sorted(expression.get("values") or []))
            parts.append(f"{key} {_SET_OPERATORS[operator]} ({values})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise KubeError(f'"{operator}" is not a valid label selector operator')
    return ",".join(parts)


def _controller(obj: dict) -> dict | None:
    """The ownerReference of the object's controller, if it has one."""
    references = obj["metadata"].get("ownerReferences") or []
    return next((reference for reference in references if reference.get("controller")), None)


def _controlled_by(obj: dict, kind: str, uids: set[str]) -> bool:
    controller = _controller(obj) or {}
    return controller.get("kind") == kind and controller.get("uid") in uids


def _read_deployment(client, cluster: KubernetesCluster, namespace: str, name: str) -> dict:
    response = _with_retries(
        lambda: apps_api(client).read_namespaced_deployment(
            name, namespace, _preload_content=False, _request_timeout=_timeout()
        ),
        what=f"GET deployment {cluster.name}/{namespace}/{name}",
    )
    return json.loads(response.data)


@dataclass
class PodSet:
    """A Deployment's own pods as one LIST saw them, kept up to date by a watch of the pods its
    selector picks (`label_selector`, from `resource_version`): how a deleted pod's replacement
    is followed."""

    desired: int  # spec.replicas (the API defaults it to 1; absent only from hand-made objects)
    label_selector: str
    resource_version: str
    pods: dict[str, PodInfo] = field(default_factory=dict)  # by name
    owned: set[str] = field(default_factory=set)  # uids of the Deployment's ReplicaSets
    others: set[str] = field(default_factory=set)  # uids of the other ReplicaSets listed

    @classmethod
    def of(cls, deployment: dict, pods: list[dict], replica_sets: list[dict], version: str):
        deployment_uid = {deployment["metadata"]["uid"]}
        listed = {rs["metadata"]["uid"] for rs in replica_sets}
        owned = {
            rs["metadata"]["uid"]
            for rs in replica_sets
            if _controlled_by(rs, "Deployment", deployment_uid)
        }
        found = cls(
            desired=deployment["spec"].get("replicas", 1),
            label_selector=label_selector_of(deployment["spec"].get("selector") or {}),
            resource_version=version,
            owned=owned,
            others=listed - owned,
        )
        for pod in pods:
            found.changed(pod["metadata"]["name"], pod)
        return found

    @property
    def ready(self) -> int:
        """Ready pods; terminating ones do not count, so after a delete this reaches `desired`
        once the replacements are Ready."""
        return sum(1 for pod in self.pods.values() if pod.ready and not pod.deleting)

    def still_running(self, *, name: str, uid: str) -> bool:
        """The pod `name` is still the one of `uid`, and nobody asked for its deletion."""
        return pod_still_running(self.pods.values(), name=name, uid=uid)

    def changed(self, name: str, pod: dict | None) -> bool:
        """Takes in a watched change of the pod `name` (None: it left the API); False when its
        ReplicaSet is one this set never listed (a new one): it must be LISTed again."""
        controller = (_controller(pod) or {}) if pod else {}
        if pod is None or controller.get("kind") != "ReplicaSet":
            self.pods.pop(name, None)
        elif controller.get("uid") in self.owned:
            self.pods[name] = PodInfo.of(pod)
        elif controller.get("uid") not in self.others:
            return False
        return True


def pod_still_running(pods: Iterable[PodInfo], *, name: str, uid: str) -> bool:
    """Among `pods`, the pod `name` is still the one of `uid`, and nobody asked for its
    deletion (a DELETE in doubt that was not applied leaves it so)."""
    return any(pod.name == name and pod.uid == uid and not pod.deleting for pod in pods)


def _pod_set(client, cluster: KubernetesCluster, deployment: dict) -> PodSet:
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    selector = label_selector_of(deployment["spec"].get("selector") or {})
    # Pods first: a ReplicaSet exists before its pods, so the ReplicaSets listed next include
    # the controller of every pod listed (unless it was deleted meanwhile, and its pods with it).
    pods, version = _all_pages_at(
        partial(core_api(client).list_namespaced_pod, namespace),
        label_selector=selector,
        what=f"LIST pods of {cluster.name}/{namespace}/{name}",
        raw=True,
    )
    replica_sets = _all_pages(
        partial(apps_api(client).list_namespaced_replica_set, namespace),
        label_selector=selector,
        what=f"LIST replicasets of {cluster.name}/{namespace}/{name}",
        raw=True,
    )
    return PodSet.of(deployment, pods, replica_sets, version)


def pod_set(*, cluster: KubernetesCluster, namespace: str, deployment_name: str) -> PodSet:
    """The Deployment's own pods now, to follow them (a GET and two paged LISTs).
    DeploymentNotFound when the Deployment does not exist."""
    with api_client(cluster) as client:
        deployment = _read_deployment(client, cluster, namespace, deployment_name)
        return _pod_set(client, cluster, deployment)


def deployment_pods(
    *, cluster: KubernetesCluster, namespace: str, deployment_name: str
) -> list[PodInfo]:
    """The Deployment's pods by name, terminating ones included (a GET and two paged LISTs).
    DeploymentNotFound when the Deployment does not exist."""
    found = pod_set(cluster=cluster, namespace=namespace, deployment_name=deployment_name)
    return sorted(found.pods.values(), key=lambda pod: pod.name)


def pick_pods(pods: Sequence[PodInfo], names: Iterable[str]) -> list[PodInfo]:
    """The pods named, from a Deployment's pods; PodNotFound for the first name that is not one
    of them, whether it names no pod at all or a pod of something else."""
    by_name = {pod.name: pod for pod in pods}
    picked = []
    for name in names:
        if name not in by_name:
            raise PodNotFound(pod_missing_message(name))
        picked.append(by_name[name])
    return picked


def _deleted(answer: dict, *, namespace: str, name: str, uid: str | None) -> DeletedPod:
    if answer.get("kind") == "Status":  # removed outright: no object left to return
        details = answer.get("details") or {}
        uid = details.get("uid") or uid or ""
        return DeletedPod(name=name, namespace=namespace, uid=uid, grace_period_seconds=None)
    meta = answer.get("metadata") or {}
    return DeletedPod(
        name=name,
        namespace=namespace,
        uid=meta.get("uid", ""),
        grace_period_seconds=meta.get("deletionGracePeriodSeconds"),
    )


def delete_pod(
    *,
    cluster: KubernetesCluster,
    namespace: str,
    name: str,
    grace_period_seconds: int | None = None,
    uid: str | None = None,
) -> DeletedPod:
    """`kubectl delete pod`: a DELETE with the grace period (None: the pod's own) and, given
    a uid, the precondition that the pod is still that one (409, a KubeError, if it was replaced
    under the same name).

    A DELETE is repeated on transient failures: deleting a pod that is already terminating
    changes nothing. But once an attempt failed without an answer, the pod may have gone
    through it, so a later 404 means deleted, not PodNotFound. When every attempt failed and
    one of them may have been applied: PodDeleteInDoubt.
    """
    options = V1DeleteOptions(
        grace_period_seconds=grace_period_seconds,
        preconditions=V1Preconditions(uid=uid) if uid else None,
    )
    what = f"DELETE pod {cluster.name}/{namespace}/{name}"
    missing = partial(PodNotFound, pod_missing_message(name))
    with api_client(cluster) as client:
        core = core_api(client)

        def delete():
            return core.delete_namespaced_pod(
                name,
                namespace,
                body=options,
                _preload_content=False,
                _request_timeout=_timeout(),
            )

        attempts = _Attempts(what)
        for attempt in attempts:
            try:
                answer = json.loads(_call(delete, not_found=missing).data)
                return _deleted(answer, namespace=namespace, name=name, uid=uid)
            except PodNotFound:
                if not attempts.in_doubt:
                    raise
                logger.info("%s: gone after an attempt without an answer; deleted", what)
                return DeletedPod(
                    name=name, namespace=namespace, uid=uid or "", grace_period_seconds=None
                )
            except KubeTransientError as error:
                attempts.failed(attempt, error)
    if attempts.in_doubt:
        raise PodDeleteInDoubt(f"{attempts.last.message} (the pod may have been deleted)")
    raise attempts.last
