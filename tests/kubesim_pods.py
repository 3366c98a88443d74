"""The pods of kubesim (tests/kubesim.py): the ReplicaSet controller, and the Pod objects.

Each ReplicaSet keeps one pod in each of its slots, 0 .. its replicas - 1, as the rollout has
scaled it.  A pod whose deletion starts leaves its slot at once, and the ReplicaSet puts a new
pod there (the real controller no longer counts a pod with a deletionTimestamp), which becomes
ready ``replacement_ready_seconds`` later; the deleted pod stays, as it was, until its grace
period is over.  Like the rest of kubesim this is worked out from timestamps whenever the state
is looked at.  The API's side of a deletion (options, preconditions, errors) is in kubesim.
"""

from __future__ import annotations

import copy
import math
import random
import time
import uuid
from dataclasses import dataclass

DEFAULT_GRACE_SECONDS = 30  # the API's default for spec.terminationGracePeriodSeconds
NODE_NAME = "kubesim-node"
SAFE_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s' alphabet for generated name suffixes


def ts(t):
    """A Unix time as the API writes it: RFC 3339 in whole seconds, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class PodDeletion:
    """A pod deletion that took effect: the first one of the pod, or one that shortened its
    grace period (``KubeSimulator.pod_deletions``)."""

    namespace: str
    name: str
    uid: str
    grace_period_seconds: int  # the one in force: the request's, or the pod's default
    propagation_policy: str | None
    requested_at: float  # time.time()


@dataclass(eq=False)
class PodState:
    """One pod of a ReplicaSet; ``obj`` is what GETs, lists and watches show of it."""

    name: str
    uid: str
    revision: object  # kubesim's _Revision: the ReplicaSet that owns the pod
    slot: int  # which of the ReplicaSet's replicas it is, until it is deleted
    created: float
    ready_at: float  # never ready before this; math.inf when it was deleted unready
    restarts: int = 0
    deleted_at: float | None = None  # when its deletion was asked for
    grace: int = 0  # deletionGracePeriodSeconds, once deleted_at is set
    ready: bool = False  # as of the last look
    obj: dict | None = None
    shown: tuple = ()  # the inputs ``obj`` was rendered from: a change means a new write

    @property
    def deletion_timestamp(self):
        """When the pod leaves the API, or None while nobody deleted it."""
        return None if self.deleted_at is None else self.deleted_at + self.grace


class PodController:
    """The ReplicaSet controller, mixed into kubesim.KubeSimulator, which provides ``step``,
    ``replacement_ready_seconds``, ``_pod_counts`` (what the rollout has scaled each
    ReplicaSet to), ``_pod_template`` and ``_emit``.  The caller holds the lock."""

    def _sync_pods(self, d, now):
        """Brings the deployment's pods up to ``now``: pods whose grace period is over leave,
        each ReplicaSet fills its slots and lets go of the others, and pods whose readiness
        changed are written."""
        counts = self._pod_counts(d, now)
        filled = set()
        for pod in list(d.pods):
            if pod.deleted_at is None and pod.slot < counts.get(pod.revision.hash, (0, 0))[0]:
                filled.add((pod.revision.hash, pod.slot))
            elif pod.deleted_at is None or pod.deletion_timestamp <= now:
                self._remove_pod(d, pod)  # scaled down (at once, without grace) or gone
        for rev in d.revisions:
            for slot in range(counts.get(rev.hash, (0, 0))[0]):
                if (rev.hash, slot) not in filled:
                    self._add_pod(d, rev, slot, *self._slot_times(d, rev, slot, now))
        for pod in d.pods:
            self._show_pod(d, pod, counts, now)

    def _slot_times(self, d, rev, slot, now):
        """(created, ready_at) of a pod that fills a slot: a rollout adds the new ReplicaSet's
        pods one per step, each ready a step later; other pods come, ready, as soon as the spec
        asks for them."""
        created = max(rev.created, d.spec_changed)
        if rev is d.revisions[-1] and d.started >= rev.created:  # rev came with a rollout
            rolled = d.started + (slot + 1) * self.step
            if rolled >= created:
                return min(rolled, now), rolled + self.step
        return min(created, now), min(created, now)

    def _add_pod(self, d, rev, slot, created, ready_at):
        rs_name, taken = f"{d.obj['metadata']['name']}-{rev.hash}", {p.name for p in d.pods}
        while (name := f"{rs_name}-{''.join(random.choices(SAFE_CHARS, k=5))}") in taken:
            pass  # the name is taken: draw another suffix
        pod = PodState(name, str(uuid.uuid4()), rev, slot, created, ready_at)
        d.pods.append(pod)
        return pod

    def _show_pod(self, d, pod, counts, now):
        """Writes the pod (an ADDED or MODIFIED event) if what the API shows of it changed.
        A pod is ready once its ready_at has come and, while it fills a slot, the rollout has
        got that far (a paused or stalled rollout keeps its newest pod unready)."""
        held_back = pod.deleted_at is None and pod.slot >= counts.get(pod.revision.hash, (0, 0))[1]
        pod.ready = now >= pod.ready_at and not held_back
        crashing = d.stalled and not pod.ready and pod.revision is d.revisions[-1]
        shown = (pod.ready, crashing, pod.restarts, pod.deleted_at, pod.grace)
        if shown == pod.shown:
            return
        event = "MODIFIED" if pod.obj else "ADDED"
        pod.shown, meta = shown, d.obj["metadata"]
        rs_name = f"{meta['name']}-{pod.revision.hash}"
        template = self._pod_template(pod.revision)
        pod.obj = render_pod(pod, meta["namespace"], rs_name, template, pod.ready, crashing)
        self._emit(pod.obj, event)

    def _remove_pod(self, d, pod):
        d.pods.remove(pod)
        if pod.obj:
            self._emit(pod.obj, "DELETED")

    def _terminate(self, d, pod, grace, now):
        """Starts the pod's deletion, or shortens its grace period; 0 removes it at once.
        Returns the Pod as marked for deletion."""
        counts = self._pod_counts(d, now)
        first = pod.deleted_at is None
        if first:
            pod.deleted_at = now
            pod.ready_at = pod.ready_at if pod.ready else math.inf  # it stays as it was
        pod.grace = grace
        self._show_pod(d, pod, counts, now)
        marked = copy.deepcopy(pod.obj)
        if grace == 0:
            self._remove_pod(d, pod)
        if first:
            ready_at = now + self.replacement_ready_seconds
            self._show_pod(d, self._add_pod(d, pod.revision, pod.slot, now, ready_at), counts, now)
        return marked


def render_pod(pod, namespace, rs_name, template, ready, crashing):
    """The Pod object: ``template`` is the ReplicaSet's pod template (with the
    pod-template-hash label); ``crashing`` containers wait in CrashLoopBackOff."""
    meta = {"name": pod.name, "generateName": f"{rs_name}-", "namespace": namespace}
    meta.update(uid=pod.uid, creationTimestamp=ts(pod.created))
    meta["labels"] = dict(template["metadata"]["labels"])
    if template["metadata"].get("annotations"):
        meta["annotations"] = dict(template["metadata"]["annotations"])
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name}
    meta["ownerReferences"] = [
        {**owner, "uid": pod.revision.uid, "controller": True, "blockOwnerDeletion": True}
    ]
    if pod.deleted_at is not None:
        meta["deletionTimestamp"] = ts(pod.deletion_timestamp)
        meta["deletionGracePeriodSeconds"] = pod.grace
    spec = {**template["spec"], "nodeName": NODE_NAME}
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": spec,
        "status": _status(pod, spec["containers"], ready, crashing),
    }


def _status(pod, containers, ready, crashing):
    created = ts(pod.created)
    if ready:
        state = {"running": {"startedAt": created}}
    elif crashing:
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    last_state = {}
    if pod.restarts:  # the container that the kubelet restarted last exited with an error
        exited = {"exitCode": 1, "reason": "Error", "startedAt": created, "finishedAt": created}
        last_state = {"terminated": exited}
    statuses = [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": ready,
            "started": ready or crashing,
            "restartCount": pod.restarts,
            "state": state,
            "lastState": last_state,
        }
        for c in containers
    ]
    conditions = [{"type": "Initialized", "status": "True", "lastTransitionTime": created}]
    for kind in ("Ready", "ContainersReady"):
        condition = {"type": kind, "status": str(ready)}
        if ready:
            condition["lastTransitionTime"] = ts(max(pod.created, pod.ready_at))
        else:
            unready = ", ".join(c["name"] for c in containers)
            condition.update(lastTransitionTime=created, reason="ContainersNotReady")
            condition["message"] = f"containers with unready status: [{unready}]"
        conditions.append(condition)
    conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": created})
    status = {"phase": "Running" if ready or crashing else "Pending", "conditions": conditions}
    status.update(startTime=created, containerStatuses=statuses, qosClass="BestEffort")
    return status
