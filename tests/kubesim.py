"""kubesim: a small, stateful Kubernetes API server for tests and demos.

It serves enough of the real HTTP API (discovery, apps/v1 Deployments and ReplicaSets,
v1 Pods, watch) for the unmodified official ``kubernetes`` client and for kubectl, and plays
the Deployment and ReplicaSet controllers.  After a ``kubectl rollout restart`` a new
ReplicaSet revision replaces the old pods one per ``rollout_step_seconds``, writing the status
fields and conditions that ``kubectl rollout status`` reads.  A deleted pod is replaced at once
by its ReplicaSet, and the replacement becomes ready ``replacement_ready_seconds`` later (see
tests/kubesim_pods.py for the pods themselves).  Tests inject faults from Python: error
responses, slow responses, stalled rollouts and forbidden namespaces.

Rollouts, readiness and grace periods are derived from timestamps whenever the state is looked
at (on every request, and twice a step inside each watch stream), so no background thread
ticks: a pod that the controller would have created while nobody looked is written when the
state is next looked at, with the creation time it would have had.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import math
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.kubesim_pods import SAFE_CHARS, PodController, PodDeletion, PodState, ts

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# Strategic merge patch merges these lists item by item on the given key (the API's
# patchMergeKey); every other list is replaced as a whole.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
# Status reasons are the HTTP phrases in CamelCase ("NotFound"), except for these.
REASONS = {410: "Expired", 422: "Invalid", 500: "InternalError", 504: "Timeout"}
WATCH_HISTORY = 1000  # events kept for resuming watches; older resourceVersions get 410
DEFAULT_WATCH_TIMEOUT = 1800  # the apiserver's --min-request-timeout
PATH_RE = re.compile(
    r"/(?P<gv>apis/apps/v1|api/v1)(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<res>deployments|replicasets|pods)(?:/(?P<name>[^/]+)(?P<sub>/status)?)?"
)
API_PATHS = {"deployments": "apis/apps/v1", "replicasets": "apis/apps/v1", "pods": "api/v1"}
NAMESPACE_RE = re.compile(r"/api/v1/namespaces(?:/(?P<name>[^/]+))?")
DISCOVERY = {
    "/version": {
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-kubesim",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    },
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": "apps"}]},
    "/apis/apps/v1": {"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
}
_APPS_V1 = {"groupVersion": "apps/v1", "version": "v1"}
DISCOVERY["/apis"]["groups"][0].update(versions=[_APPS_V1], preferredVersion=_APPS_V1)
# kubectl resolves "deploy", "rs" and "po" through the short names.
for _path, _name, _kind, _verbs, _short in (
    ("/apis/apps/v1", "deployments", "Deployment", "get list watch patch update delete", "deploy"),
    ("/apis/apps/v1", "deployments/status", "Deployment", "get", ""),
    ("/apis/apps/v1", "replicasets", "ReplicaSet", "get list", "rs"),
    ("/api/v1", "pods", "Pod", "get list watch delete", "po"),
):
    _singular = "" if "/" in _name else _kind.lower()
    _resource = {"name": _name, "singularName": _singular, "namespaced": True, "kind": _kind}
    _resource.update(verbs=_verbs.split(), **({"shortNames": [_short]} if _short else {}))
    DISCOVERY[_path]["resources"].append(_resource)
_NAMESPACES = {"name": "namespaces", "singularName": "namespace", "namespaced": False}
_NAMESPACES.update(kind="Namespace", verbs=["get", "list"], shortNames=["ns"])
DISCOVERY["/api/v1"]["resources"].append(_NAMESPACES)
# kubectl first asks /api and /apis for this aggregated form, which servers since 1.26 give;
# it needs no other discovery request then.
AGGREGATED_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _aggregated(group, path):
    """The APIGroupDiscoveryList of one group version, from its APIResourceList."""
    resources = {}
    for r in DISCOVERY[path]["resources"]:
        name, _, sub = r["name"].partition("/")
        kind = {"group": group, "version": "v1", "kind": r["kind"]}
        if sub:
            subresource = {"subresource": sub, "responseKind": kind, "verbs": r["verbs"]}
            resources[name].setdefault("subresources", []).append(subresource)
            continue
        scope = "Namespaced" if r["namespaced"] else "Cluster"
        resource = {"resource": name, "responseKind": kind, "scope": scope, "verbs": r["verbs"]}
        resource.update(singularResource=r["singularName"], shortNames=r.get("shortNames", []))
        resources[name] = resource
    version = {"version": "v1", "resources": list(resources.values()), "freshness": "Current"}
    item = {"metadata": {"name": group}, "versions": [version]}
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "items": [item],
    }


AGGREGATED = {"/api": _aggregated("", "/api/v1"), "/apis": _aggregated("apps", "/apis/apps/v1")}
# The fields each resource can be selected by (fieldSelector), as the apiserver allows them.
SELECTABLE_FIELDS = {
    "deployments": {"metadata.name", "metadata.namespace"},
    "replicasets": {"metadata.name", "metadata.namespace", "status.replicas"},
    "pods": {
        *("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy"),
        *("spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork"),
        *("status.phase", "status.podIP", "status.nominatedNodeName"),
    },
}
KINDS = {"deployments": "Deployment", "replicasets": "ReplicaSet", "pods": "Pod"}
AVAILABLE = {  # a deployment's Available condition, by whether enough replicas are
    True: ("True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
    False: (
        "False",
        "MinimumReplicasUnavailable",
        "Deployment does not have minimum availability.",
    ),
}


class ApiError(Exception):
    """An error that is answered with a ``Status`` object, as the apiserver does."""

    def __init__(self, code, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.message, self.details, self.headers = code, message, details, headers

    def status(self):
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        reason = REASONS.get(self.code) or HTTPStatus(self.code).phrase.replace(" ", "")
        body.update(message=self.message, reason=reason)
        if self.details is not None:
            body["details"] = self.details
        return {**body, "code": self.code}


def _details(res, name, **extra):
    group = {} if res in ("pods", "namespaces") else {"group": "apps"}
    return {"name": name, **group, "kind": res, **extra}


def _qualified(res):
    return res if res in ("pods", "namespaces") else f"{res}.apps"


def not_found(res, name):
    return ApiError(404, f'{_qualified(res)} "{name}" not found', _details(res, name))


def conflict(res, name):
    message = (
        f'Operation cannot be fulfilled on {_qualified(res)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, message, _details(res, name))


def invalid(name, field, message):
    cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {message}", "field": field}
    details = {"name": name, "group": "apps", "kind": "Deployment", "causes": [cause]}
    return ApiError(422, f'Deployment.apps "{name}" is invalid: {field}: {message}', details)


def method_not_allowed():
    return ApiError(405, "the server does not allow this method on the requested resource")


@dataclass(frozen=True)
class RecordedRequest:
    """A request as received; ``headers`` is an ``email.message.Message`` (case-insensitive)."""

    method: str
    path: str
    query: dict
    headers: object
    body: object  # parsed JSON, or None
    content_type: str | None


@dataclass
class _Rule:
    """An injected fault: answer ``status`` and/or wait ``seconds``, ``times`` more times."""

    method: str | None
    pattern: re.Pattern
    times: int
    status: int = 0
    seconds: float = 0.0
    retry_after: int = 1
    applied: bool = False  # the fault comes after the request took effect (answer_after_applying)
    drop: bool = False  # no answer: the connection is closed (drop_next, answer_after_applying)


@dataclass
class _Revision:
    """One pod template revision, i.e. one ReplicaSet."""

    number: int
    hash: str
    template: dict
    uid: str
    created: float


@dataclass
class _Deployment:
    obj: dict  # the stored object, status included
    revisions: list[_Revision]  # oldest first; the last is the newest ReplicaSet
    spec_changed: float  # the controller reacts one step after every spec change
    completed_at: float  # when the last rollout finished
    paused_at: float
    rollout_from: _Revision | None = None  # the old revision while a rollout runs
    started: float = 0.0  # when the running rollout began
    frozen: int | None = None  # caps the rollout's steps while paused or stalled
    stalled: bool = False
    # The pods the API shows, of every revision (kubesim_pods.PodController keeps them).
    pods: list[PodState] = dataclasses.field(default_factory=list)


def _hash(value, length=10):
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()
    return "".join(SAFE_CHARS[b % len(SAFE_CHARS)] for b in digest[:length])


def _key(obj):
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def merge(target, patch, strategic):
    """RFC 7386 merge patch; ``strategic`` adds Kubernetes' keyed merging of MERGE_KEYS lists."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif strategic and key in MERGE_KEYS and isinstance(value, list):
            out[key] = _merge_list(out.get(key) or [], value, MERGE_KEYS[key])
        else:
            out[key] = merge(out.get(key), value, strategic)
    return out


def _merge_list(items, patches, key):
    out = list(items)
    for patch in patches:
        if not isinstance(patch, dict) or key not in patch:
            raise ApiError(400, f"map: {patch} does not contain declared merge key: {key}")
        index = next((i for i, item in enumerate(out) if item.get(key) == patch[key]), None)
        if patch.get("$patch") == "delete":
            out = [item for item in out if item.get(key) != patch[key]]
        elif index is None:
            out.append(merge({}, patch, True))
        else:
            out[index] = merge(out[index], patch, True)
    return out


def json_patch(doc, ops):
    """RFC 6902 JSON patch with the add, remove, replace and test operations."""
    if not isinstance(ops, list):
        raise ApiError(400, "a json patch must be a list of operations")
    for op in ops:
        try:
            kind, path = op["op"], _pointer(op["path"])
            parent = _resolve(doc, path[:-1])
            key = path[-1] if isinstance(parent, dict) else _index(parent, path[-1])
            if kind == "test" and parent[key] != op["value"]:
                raise ApiError(422, f"testing value {op['path']} failed")
            if kind in ("remove", "replace"):
                del parent[key]  # also proves that the target exists, as RFC 6902 requires
            if kind in ("add", "replace") and isinstance(parent, list):
                parent.insert(key, copy.deepcopy(op["value"]))
            elif kind in ("add", "replace"):
                parent[key] = copy.deepcopy(op["value"])
            elif kind not in ("test", "remove"):
                raise ApiError(400, f"unsupported json patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, f"json patch {op!r} cannot be applied: {exc!r}") from None
    return doc


def _pointer(text):
    if not text.startswith("/"):
        raise ValueError(f"JSON pointer {text!r} must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in text[1:].split("/")]


def _index(items, token):
    return len(items) if token == "-" else int(token)


def _resolve(doc, tokens):
    for token in tokens:
        doc = doc[_index(doc, token)] if isinstance(doc, list) else doc[token]
    return doc


def label_selector(text):
    """A predicate for k=v, k==v, k!=v, k, !k, k in (a,b) and k notin (a,b), comma = AND."""
    tests = []
    for part in filter(None, (p.strip() for p in re.split(r",(?![^(]*\))", text or ""))):
        if m := re.fullmatch(r"(!?)\s*([\w./-]+)", part):
            tests.append(lambda labels, k=m[2], neg=bool(m[1]): (k in labels) != neg)
            continue
        if m := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)", part):
            values, negate = {m[3]}, m[2] == "!="
        elif m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)", part):
            values, negate = {v.strip() for v in m[3].split(",")}, m[2] == "notin"
        else:
            raise ApiError(400, f"unable to parse requirement: {part!r}")
        # A missing label never equals a value, so it satisfies != and notin (as in k8s).
        tests.append(lambda labels, k=m[1], vs=values, neg=negate: (labels.get(k) in vs) != neg)
    return lambda labels: all(test(labels or {}) for test in tests)


def field_selector(text, res):
    """A predicate on whole objects for the SELECTABLE_FIELDS of ``res`` (=, ==, !=); values
    compare as the apiserver prints them: absent is "", booleans and numbers as text."""
    tests = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", part)
        if not m or m[1] not in SELECTABLE_FIELDS[res]:
            raise ApiError(400, f"field label not supported: {re.split('[!=]', part)[0]}")
        tests.append(lambda obj, f=m[1], v=m[3], neg=m[2] == "!=": (_field(obj, f) == v) != neg)
    return lambda obj: all(test(obj) for test in tests)


def _field(obj, path):
    value = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


class KubeSimulator(PodController):
    """The simulated cluster and its HTTP server on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        token=None,
        *,
        rollout_step_seconds=1.0,
        port=0,
        tls=False,
        client_cert=False,
        verbose=False,
        replacement_ready_seconds=None,
        bookmark_seconds=60.0,
    ):
        self.token, self.step, self.port, self.verbose = token, rollout_step_seconds, port, verbose
        # How long a pod that replaces a deleted one takes to become ready; tests may change
        # it at any time (it applies to replacements created from then on).
        self.replacement_ready_seconds = (
            rollout_step_seconds if replacement_ready_seconds is None else replacement_ready_seconds
        )
        self.tls, self.client_cert = tls or client_cert, client_cert
        # Seconds between two BOOKMARK events of a watch that allows them (the apiserver's
        # cacher sends one about every minute).
        self.bookmark_seconds = bookmark_seconds
        self.ca_pem = self.client_cert_pem = self.client_key_pem = None
        self._cond = threading.Condition()  # guards all state; notified on every write
        self._deployments = {}  # (namespace, name) -> _Deployment
        self._rv = 0
        self._events = deque()  # (resourceVersion, type, object) for watches
        self._window_start = 0  # the oldest resourceVersion a watch may resume from
        self._rules, self._forbidden, self._requests = [], set(), []
        self._deletions = []  # PodDeletion records
        self._namespaces = {"default": time.time()}  # name -> creation time
        self._stopping = threading.Event()
        self._server = None

    def start(self):
        self._server = _Server(self, self.port, self._make_tls() if self.tls else None)
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() fast: shutdown() waits for the serve loop.
        serve = self._server.serve_forever
        threading.Thread(target=serve, args=(0.05,), name="kubesim", daemon=True).start()
        return self

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self):
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()  # ends the watch streams
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- knobs for tests and demos ---------------------------------------------------------
    def add_deployment(
        self,
        namespace,
        name,
        *,
        labels=None,
        replicas=1,
        paused=False,
        progress_deadline_seconds=600,
        image="nginx:1.27",
    ):
        """Creates a Deployment whose revision 1 is fully rolled out; returns a snapshot."""
        labels = dict(labels or {"app.kubernetes.io/name": name})
        pod_labels = {"app.kubernetes.io/name": name, **labels}
        container = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent"}
        container["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
        template = {"metadata": {"labels": pod_labels}, "spec": {"containers": [container]}}
        template["spec"].update(restartPolicy="Always", dnsPolicy="ClusterFirst")
        selector = {"matchLabels": {"app.kubernetes.io/name": pod_labels["app.kubernetes.io/name"]}}
        spec = {"replicas": replicas, "selector": selector, "template": template, "paused": paused}
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
        _default_spec(spec)
        with self._cond:
            if (namespace, name) in self._deployments:
                raise ValueError(f"deployment {namespace}/{name} already exists")
            now = time.time()
            self._namespaces.setdefault(namespace, now)
            meta = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
            meta.update(generation=1, creationTimestamp=ts(now), labels=labels)
            meta["annotations"] = {REVISION: "1"}
            obj = {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": meta, "spec": spec}
            first = _Revision(1, _hash(template), copy.deepcopy(template), str(uuid.uuid4()), now)
            d = _Deployment({**obj, "status": {}}, [first], now - self.step, now, now)
            self._deployments[namespace, name] = d
            self._sync_pods(d, now)
            d.obj["status"] = self._status(d, now)
            self._emit(d.obj, "ADDED")
            return copy.deepcopy(d.obj)

    def get_deployment(self, namespace, name):
        with self._cond:
            self._advance(time.time())
            return copy.deepcopy(self._find(namespace, name).obj)

    def stall(self, namespace, name, stalled=True):
        """The running (or next) rollout of the deployment stops making progress, so it
        runs into ProgressDeadlineExceeded; ``stalled=False`` lets it carry on."""
        with self._cond:
            now = time.time()
            self._advance(now)
            d = self._find(namespace, name)
            d.stalled = stalled
            if d.rollout_from and not d.obj["spec"].get("paused"):
                if stalled and d.frozen is None:
                    d.frozen = max(1, self._steps(d, now))  # one new pod that never gets ready
                elif not stalled and d.frozen is not None:
                    d.started, d.frozen = now - d.frozen * self.step, None
            self._cond.notify_all()

    def list_pods(self, namespace, selector=None):
        """Snapshots of the pods in ``namespace`` (None: all) matching the label ``selector``,
        the terminating ones included, as the API lists them."""
        with self._cond:
            now = time.time()
            self._advance(now)
            match = label_selector(selector)
            pods = self._objects("pods", namespace, now)
            return [pod for pod in pods if match(pod["metadata"]["labels"])]

    def delete_pod(self, namespace, name, grace_period_seconds=None):
        """Deletes a pod as ``DELETE .../pods/NAME?gracePeriodSeconds=...`` does (without a
        grace period, the pod's own: 30 s); returns the Pod the API would answer with."""
        options = {"gracePeriodSeconds": grace_period_seconds}
        with self._cond:
            now = time.time()
            self._advance(now)
            return self._delete_pod(namespace, name, options, now)

    def set_restarts(self, namespace, name, restarts):
        """The pod's containers have been restarted ``restarts`` times by the kubelet."""
        with self._cond:
            now = time.time()
            self._advance(now)
            d, pod = self._find_pod(namespace, name)
            pod.restarts = restarts
            self._sync_pods(d, now)

    @property
    def pod_deletions(self):
        """The PodDeletion records of the deletions that took effect, oldest first."""
        with self._cond:
            return list(self._deletions)

    def fail_next(self, method=None, path_regex=None, status=500, times=1, *, retry_after=1):
        """The next ``times`` requests matching ``method`` and ``path_regex`` (searched in the
        path) get ``status`` with a Status body; 429 also carries Retry-After."""
        self._add_rule(_Rule(method, re.compile(path_regex or ""), times, status, 0, retry_after))

    def hang_next(self, method=None, path_regex=None, seconds=5.0, times=1):
        """The next ``times`` matching requests are only answered after ``seconds``."""
        self._add_rule(_Rule(method, re.compile(path_regex or ""), times, seconds=seconds))

    # -- faults on the wire: answers lost or replaced after the request arrived -------------
    def drop_next(self, method=None, path_regex=None, times=1):
        """The next ``times`` matching requests are not applied and get no answer: the
        connection is closed (the client cannot tell whether they were applied)."""
        self._add_rule(_Rule(method, re.compile(path_regex or ""), times, drop=True))

    def answer_after_applying(self, method=None, path_regex=None, status=None, times=1):
        """The next ``times`` matching requests take effect, then their answer is replaced by
        ``status`` (a gateway's 502/503/504 after the apiserver applied it) or, with None,
        lost: the connection is closed."""
        rule = _Rule(method, re.compile(path_regex or ""), times, status=status or 0)
        rule.applied, rule.drop = True, status is None
        self._add_rule(rule)

    def forbid(self, namespace):
        """From now on every request into ``namespace`` gets 403 Forbidden."""
        with self._cond:
            self._forbidden.add(namespace)

    def compact(self):
        """Drops the event history like etcd compaction: watches from before now get 410."""
        with self._cond:
            self._advance(time.time())  # what the controllers wrote meanwhile goes too
            self._events.clear()
            self._window_start = self._rv

    @property
    def requests(self):
        with self._cond:
            return list(self._requests)

    def reset_requests(self):
        with self._cond:
            self._requests.clear()

    def kubeconfig(self, path, context="sim", user="sim-user", namespace="default"):
        """Writes a kubeconfig for this server and returns its path.  It is JSON, which is
        YAML too, so this module needs no YAML library."""
        cluster, credentials = {"server": self.url}, {}
        if self.tls:
            cluster["certificate-authority-data"] = _b64(self.ca_pem)
        if self.client_cert:
            credentials["client-certificate-data"] = _b64(self.client_cert_pem)
            credentials["client-key-data"] = _b64(self.client_key_pem)
        elif self.token is not None:
            credentials["token"] = self.token
        config = {"apiVersion": "v1", "kind": "Config", "current-context": context}
        config["clusters"] = [{"name": context, "cluster": cluster}]
        config["users"] = [{"name": user, "user": credentials}]
        scope = {"cluster": context, "user": user, "namespace": namespace}
        config["contexts"] = [{"name": context, "context": scope}]
        Path(path).write_text(json.dumps(config, indent=2))
        return Path(path)

    # -- requests (called from the server's threads) ---------------------------------------
    def _add_rule(self, rule):
        with self._cond:
            self._rules.append(rule)

    def _record(self, request):
        """Stores the request; returns the injected fault that it triggers, if any."""
        with self._cond:
            self._requests.append(request)
            for rule in self._rules:
                if rule.method in (None, request.method) and rule.pattern.search(request.path):
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def _authenticate(self, headers):
        if self.token is None or self.client_cert:  # the TLS layer has checked the cert
            return
        expected = f"Bearer {self.token}".encode()
        if not hmac.compare_digest(headers.get("Authorization", "").encode(), expected):
            raise ApiError(401, "Unauthorized")

    def _authorize(self, method, m):
        with self._cond:
            if m["ns"] not in self._forbidden:
                return
        res, name = m["res"], m["name"] or ""
        verb = {"PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
        verb = verb or ("get" if name else "list")
        message = (
            f'{_qualified(res)} "{name}" is forbidden: User "sim-user" cannot {verb} resource '
            f'"{res}" in API group "{"" if res == "pods" else "apps"}" in the namespace "{m["ns"]}"'
        )
        raise ApiError(403, message, _details(res, name))

    def _handle(self, req):
        """Answers a request other than a watch: returns (HTTP code, body[, headers])."""
        path = req.path.rstrip("/")  # the client asks for discovery as "/apis/" and so on
        if path in DISCOVERY or path in ("/api", "/apis/apps"):
            if req.method != "GET":
                raise method_not_allowed()
            if path in AGGREGATED and AGGREGATED_TYPE in req.headers.get("Accept", ""):
                return 200, AGGREGATED[path], {"Content-Type": AGGREGATED_TYPE}
            return 200, self._discovery(path)
        if m := NAMESPACE_RE.fullmatch(path):  # kubectl looks the namespace up after a 404
            if req.method != "GET":
                raise method_not_allowed()
            return 200, self._namespace(m["name"])
        m = PATH_RE.fullmatch(path)
        if not m or API_PATHS[m["res"]] != m["gv"]:
            raise ApiError(404, "the server could not find the requested resource", {})
        self._authorize(req.method, m)
        ns, res, name = m["ns"], m["res"], m["name"]
        # Besides GET, deployments can be written and deleted, pods deleted.
        verbs = {"deployments": ("PATCH", "PUT", "DELETE"), "pods": ("DELETE",)}
        if req.method != "GET" and not (name and not m["sub"] and req.method in verbs[res]):
            raise method_not_allowed()
        with self._cond:
            now = time.time()
            self._advance(now)
            if name is None:
                return 200, self._list(res, ns, req.query, now)
            if req.method == "GET":
                found = [o for o in self._objects(res, ns, now) if o["metadata"]["name"] == name]
                if not found or ns is None:
                    raise not_found(res, name)
                return 200, found[0]
            if res == "pods":
                return 200, self._delete_pod(ns, name, _delete_options(req), now)
            d = self._find(ns, name)
            if req.method == "DELETE":
                del self._deployments[ns, name]
                self._emit(d.obj, "DELETED")
                for pod in list(d.pods):  # the garbage collector takes the pods along
                    self._remove_pod(d, pod)
                body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
                return 200, {**body, "details": _details(res, name, uid=d.obj["metadata"]["uid"])}
            return 200, self._write(d, req, now)

    def _discovery(self, path):
        if path == "/api":
            cidr = {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [cidr]}
        if path == "/apis/apps":
            return {"kind": "APIGroup", "apiVersion": "v1", **DISCOVERY["/apis"]["groups"][0]}
        return DISCOVERY[path]

    def _namespace(self, name):
        """The Namespace ``name``, or else the NamespaceList: "default", and every namespace
        that a deployment was added to."""
        with self._cond:
            rv, namespaces = str(self._rv), sorted(self._namespaces.items())
        items = []
        for ns, created in namespaces:
            uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubesim/namespaces/{ns}"))
            meta = {"name": ns, "uid": uid, "resourceVersion": "1"}
            meta.update(creationTimestamp=ts(created), labels={"kubernetes.io/metadata.name": ns})
            items.append({"metadata": meta, "spec": {"finalizers": ["kubernetes"]}})
            items[-1]["status"] = {"phase": "Active"}
        if name is None:
            meta = {"resourceVersion": rv}
            return {"kind": "NamespaceList", "apiVersion": "v1", "metadata": meta, "items": items}
        found = [item for item in items if item["metadata"]["name"] == name]
        if not found:
            raise not_found("namespaces", name)
        return {"kind": "Namespace", "apiVersion": "v1", **found[0]}

    def _list(self, res, ns, query, now):
        match_labels = label_selector(query.get("labelSelector"))
        match_fields = field_selector(query.get("fieldSelector"), res)
        items = [
            o
            for o in self._objects(res, ns, now)
            if match_labels(o["metadata"].get("labels")) and match_fields(o)
        ]
        # Pagination: the API server lists in key order (namespace/name, as etcd stores them),
        # and a continue token resumes after the last key of the page before.
        items.sort(key=_key)
        meta = {"resourceVersion": str(self._rv)}
        if query.get("continue"):
            try:
                start = json.loads(base64.urlsafe_b64decode(query["continue"]))["start"]
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid") from None
            items = [o for o in items if _key(o) > start]
        limit = int(query.get("limit") or 0)
        if 0 < limit < len(items):
            token = json.dumps({"start": _key(items[limit - 1])}).encode()
            meta["continue"] = base64.urlsafe_b64encode(token).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        for item in items:  # items of real list responses carry no kind/apiVersion either
            del item["kind"], item["apiVersion"]
        list_kind = {
            "kind": f"{KINDS[res]}List",
            "apiVersion": "v1" if res == "pods" else "apps/v1",
        }
        return {**list_kind, "metadata": meta, "items": items}

    def _objects(self, res, ns, now):
        """Copies of all objects of a resource, optionally in one namespace, in etcd order."""
        out = []
        for d in self._deployments.values():
            if ns not in (None, d.obj["metadata"]["namespace"]):
                continue
            if res == "deployments":
                out.append(copy.deepcopy(d.obj))
            elif res == "pods":
                out.extend(copy.deepcopy(pod.obj) for pod in d.pods)
            else:
                counts = self._pod_counts(d, now)
                for rev in d.revisions:
                    out.append(self._replicaset(d, rev, counts.get(rev.hash, (0, 0))[0]))
        return sorted(out, key=_key)

    def _write(self, d, req, now):
        """Applies a PATCH or PUT to a deployment; returns the stored (or dry-run) object."""
        name, old = d.obj["metadata"]["name"], d.obj
        # Without fieldManager the apiserver names the manager after the User-Agent product.
        agent = req.headers.get("User-Agent", "unknown")
        manager = req.query.get("fieldManager") or agent.split("/")[0]
        if len(manager) > 128:
            message = "fieldManager: Too long: may not be more than 128 bytes"
            raise ApiError(422, f"PatchOptions.meta.k8s.io is invalid: {message}")
        if req.query.get("dryRun") not in (None, "All"):
            raise ApiError(400, 'dryRun: Unsupported value: supported values: "All"')
        if req.method == "PUT":
            new = copy.deepcopy(req.body)  # the recorded request must stay as it was sent
        elif req.content_type == JSON_PATCH:
            new = json_patch(copy.deepcopy(old), req.body)
        elif req.content_type in (MERGE_PATCH, STRATEGIC_PATCH):
            new = merge(copy.deepcopy(old), req.body, req.content_type == STRATEGIC_PATCH)
        else:
            types = ", ".join((JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH))
            message = "the body of the request was in an unknown format - accepted media types"
            raise ApiError(415, f"{message} include: {types}")
        if not isinstance(new, dict) or not isinstance(new.setdefault("metadata", {}), dict):
            raise ApiError(400, "the body must be a JSON object with object metadata")
        meta, old_meta = new["metadata"], old["metadata"]
        url_key = (name, old_meta["namespace"])
        if (meta.get("name", name), meta.get("namespace", url_key[1])) != url_key:
            message = f"the name of the object ({meta.get('name')}) does not match the name"
            raise ApiError(400, f"{message} on the URL ({name})")
        if meta.get("resourceVersion", old_meta["resourceVersion"]) != old_meta["resourceVersion"]:
            raise conflict("deployments", name)
        # Server-owned fields win over whatever the client sent; status has its own endpoint.
        owned = ("uid", "creationTimestamp", "generation", "resourceVersion", "managedFields")
        meta.update({k: v for k, v in old_meta.items() if k in owned})
        new.update(kind="Deployment", apiVersion="apps/v1", status=old["status"])
        if not isinstance(new.get("spec"), dict):
            raise invalid(name, "spec", "Required value")
        _default_spec(new["spec"])
        _validate(name, new["spec"], old["spec"])
        if new == old:
            return copy.deepcopy(old)  # no-op writes are not persisted and bump nothing
        fields = _changed_fields(old, new)
        if new["spec"] != old["spec"]:
            meta["generation"] += 1
        _track_manager(meta, manager, fields, now)
        if req.query.get("dryRun"):
            return copy.deepcopy(new)
        d.obj = new
        self._spec_written(d, old["spec"], now)
        self._emit(d.obj, "MODIFIED")
        return copy.deepcopy(new)

    # -- the simulated Deployment controller -----------------------------------------------
    def _spec_written(self, d, old_spec, now):
        spec = d.obj["spec"]
        if spec == old_spec:
            return
        d.spec_changed = now
        was_paused, paused = bool(old_spec.get("paused")), bool(spec.get("paused"))
        if paused and not was_paused:
            d.paused_at = now
            if d.rollout_from and d.frozen is None:
                d.frozen = self._steps(d, now)
        elif was_paused and not paused and d.frozen is not None and not d.stalled:
            d.started, d.frozen = now - d.frozen * self.step, None
        template_hash = _hash(spec["template"])
        if paused or d.revisions[-1].hash == template_hash:
            return  # paused deployments get no new ReplicaSet, as with the real controller
        rev = next((r for r in d.revisions if r.hash == template_hash), None)
        if rev:  # going back to an old template re-uses its ReplicaSet under a new number
            d.revisions.remove(rev)
        else:
            template = copy.deepcopy(spec["template"])
            rev = _Revision(0, template_hash, template, str(uuid.uuid4()), now)
        rev.number = max(r.number for r in d.revisions) + 1
        d.rollout_from = d.revisions[-1]
        d.revisions.append(rev)
        d.started, d.frozen = now, (1 if d.stalled else None)

    def _steps(self, d, now):
        steps = int((now - d.started) // self.step)
        return steps if d.frozen is None else min(steps, d.frozen)

    def _pod_counts(self, d, now):
        """(pods, ready pods) per revision hash, as the rollout has scaled the ReplicaSets.  A
        rollout step adds one new pod (surge 1) and retires one old pod once the previous new
        pod is ready (maxUnavailable 0).  Deleted pods and their replacements do not show here,
        only in the pods themselves (kubesim_pods.PodController)."""
        replicas, newest = d.obj["spec"]["replicas"], d.revisions[-1].hash
        if d.rollout_from is None:
            return {newest: (replicas, replicas)}
        n = min(self._steps(d, now), replicas)
        old = (replicas - n + 1) if n else replicas
        return {newest: (n, max(0, n - 1)), d.rollout_from.hash: (old, old)}

    def _advance(self, now):
        """Brings every deployment and its pods up to ``now``, storing and emitting changes."""
        for d in self._deployments.values():
            spec = d.obj["spec"]
            observed = now >= d.spec_changed + self.step  # the controller has seen the spec
            running = observed and d.rollout_from and d.frozen is None
            if running and self._steps(d, now) > spec["replicas"]:
                d.completed_at = d.started + (spec["replicas"] + 1) * self.step
                d.rollout_from = None
                del d.revisions[: -(spec["revisionHistoryLimit"] + 1)]
            self._sync_pods(d, now)  # pods go on even while a new spec is not yet observed
            if not observed:
                continue
            status = self._status(d, now)
            annotations = d.obj["metadata"].setdefault("annotations", {})
            revision = str(d.revisions[-1].number)
            if status != d.obj["status"] or annotations.get(REVISION) != revision:
                annotations[REVISION] = revision
                d.obj["status"] = status
                self._emit(d.obj, "MODIFIED")

    def _status(self, d, now):
        """The status the controller writes (zero counters are omitted, as on the wire); the
        pods must be synced to ``now``."""
        spec, meta, newest = d.obj["spec"], d.obj["metadata"], d.revisions[-1]
        pods = [pod for pod in d.pods if pod.deleted_at is None]  # terminating ones don't count
        ready = sum(pod.ready for pod in pods)
        updated = 0
        if newest.hash == _hash(spec["template"]):
            updated = sum(pod.revision is newest for pod in pods)
        rs = f'ReplicaSet "{meta["name"]}-{newest.hash}"'
        if spec.get("paused"):
            progressing = ("Unknown", "DeploymentPaused", "Deployment is paused", d.paused_at)
        elif d.rollout_from is None:
            message = f"{rs} has successfully progressed."
            progressing = ("True", "NewReplicaSetAvailable", message, d.completed_at)
        else:
            progressed = d.started + self._steps(d, now) * self.step
            deadline = progressed + spec["progressDeadlineSeconds"]
            if now > deadline:
                message = f"{rs} has timed out progressing."
                progressing = ("False", "ProgressDeadlineExceeded", message, deadline)
            else:
                message = f"{rs} is progressing."
                progressing = ("True", "ReplicaSetUpdated", message, progressed)
        # Rollouts surge, so only deleted pods can take the deployment below its minimum
        # availability; it has it back once enough replacements are ready.
        enough = ready >= spec["replicas"] - _max_unavailable(spec)
        since = [pod.ready_at if enough else pod.created for pod in pods if pod.ready == enough]
        available = (*AVAILABLE[enough], max(since, default=now))
        previous = {c["type"]: c for c in d.obj["status"].get("conditions", [])}
        conditions = []
        for kind, (status, reason, message, since) in (
            ("Available", available),
            ("Progressing", progressing),
        ):
            old = previous.get(kind)
            if kind == "Available" and old and old["status"] == status:
                conditions.append(old)  # SetDeploymentCondition leaves an unchanged one alone
                continue
            cond = {"type": kind, "status": status, "lastUpdateTime": ts(since)}
            # lastTransitionTime only moves when the status flips (SetDeploymentCondition).
            changed = not old or old["status"] != status
            cond["lastTransitionTime"] = ts(since) if changed else old["lastTransitionTime"]
            conditions.append({**cond, "reason": reason, "message": message})
        counters = {"replicas": len(pods), "updatedReplicas": updated, "readyReplicas": ready}
        counters.update(availableReplicas=ready, unavailableReplicas=len(pods) - ready)
        status = {"observedGeneration": meta["generation"]}
        return {**status, **{k: v for k, v in counters.items() if v}, "conditions": conditions}

    def _pod_template(self, rev):
        template = copy.deepcopy(rev.template)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = rev.hash
        return template

    def _replicaset(self, d, rev, replicas):
        meta, spec = d.obj["metadata"], d.obj["spec"]
        template = self._pod_template(rev)
        annotations = {REVISION: str(rev.number)}
        annotations["deployment.kubernetes.io/desired-replicas"] = str(spec["replicas"])
        annotations["deployment.kubernetes.io/max-replicas"] = str(spec["replicas"] + 1)
        rs_meta = {"name": f"{meta['name']}-{rev.hash}", "namespace": meta["namespace"]}
        rs_meta.update(uid=rev.uid, resourceVersion=meta["resourceVersion"], generation=1)
        rs_meta.update(creationTimestamp=ts(rev.created), annotations=annotations)
        rs_meta.update(labels=template["metadata"]["labels"], ownerReferences=[_owner(d.obj)])
        selector = {"matchLabels": {**spec["selector"]["matchLabels"], HASH_LABEL: rev.hash}}
        pods = [pod for pod in d.pods if pod.revision is rev and pod.deleted_at is None]
        ready = sum(pod.ready for pod in pods)
        counters = {
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        status = {"replicas": len(pods), **{k: v for k, v in counters.items() if v}}
        rs = {"kind": "ReplicaSet", "apiVersion": "apps/v1", "metadata": rs_meta}
        rs["spec"] = {"replicas": replicas, "selector": selector, "template": template}
        rs["status"] = {**status, "observedGeneration": 1}
        return rs

    # -- pods: the API's side (the ReplicaSet controller is kubesim_pods.PodController) ---
    def _delete_pod(self, namespace, name, options, now):
        """A pod's DELETE (the apiserver's rest.BeforeDelete with the pod strategy): returns the
        Pod as it stands, with its deletionTimestamp; a grace period of 0 removes it at once."""
        d, pod = self._find_pod(namespace, name)
        preconditions = options.get("preconditions") or {}
        for key, label, why in (
            ("uid", "UID", "deleted and then recreated"),
            ("resourceVersion", "ResourceVersion", "modified"),
        ):
            wanted, actual = preconditions.get(key), pod.obj["metadata"][key]
            if wanted is not None and wanted != actual:
                message = (
                    f'Operation cannot be fulfilled on Pod "{name}": the {label} in the '
                    f"precondition ({wanted}) does not match the {label} in record ({actual}). "
                    f"The object might have been {why}"
                )
                raise ApiError(409, message, {"name": name, "kind": "Pod"})
        grace = options.get("gracePeriodSeconds")
        grace = 1 if grace is not None and grace < 0 else grace  # negative means 1 s
        if pod.deleted_at is not None and (grace is None or grace >= pod.grace):
            return copy.deepcopy(pod.obj)  # already terminating: only a shorter grace counts
        if grace is None:
            grace = pod.obj["spec"]["terminationGracePeriodSeconds"]
        if options.get("dryRun"):
            meta = {"deletionTimestamp": ts((pod.deleted_at or now) + grace)}
            meta["deletionGracePeriodSeconds"] = grace
            return merge(copy.deepcopy(pod.obj), {"metadata": meta}, strategic=False)
        answer = self._terminate(d, pod, grace, now)
        policy = options.get("propagationPolicy")
        self._deletions.append(PodDeletion(namespace, name, pod.uid, grace, policy, now))
        return answer

    # -- state helpers (the caller holds the lock) -------------------------------------------
    def _find(self, namespace, name):
        try:
            return self._deployments[namespace, name]
        except KeyError:
            raise not_found("deployments", name) from None

    def _find_pod(self, namespace, name):
        for (ns, _), d in self._deployments.items():
            for pod in d.pods if ns == namespace else ():
                if pod.name == name:
                    return d, pod
        raise not_found("pods", name)

    def _emit(self, obj, event_type):
        """Records a write of ``obj``: a new resourceVersion and an event for the watches."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._events.append((self._rv, event_type, copy.deepcopy(obj)))
        if len(self._events) > WATCH_HISTORY:
            self._window_start = self._events.popleft()[0]
        self._cond.notify_all()

    # -- watch -------------------------------------------------------------------------------
    def _watch_open(self, res, ns, query):
        """Returns (filter, initial events, resourceVersion the stream continues after)."""
        match_labels = label_selector(query.get("labelSelector"))
        match_fields = field_selector(query.get("fieldSelector"), res)

        def wanted(obj):
            meta = obj["metadata"]
            in_ns = obj["kind"] == KINDS[res] and ns in (None, meta["namespace"])
            return in_ns and match_labels(meta.get("labels")) and match_fields(obj)

        # With sendInitialEvents (the "watch list" of client-go's informers, kubectl's too),
        # the current state comes first, then a bookmark that marks its end.
        send_initial = query.get("sendInitialEvents")
        if send_initial and query.get("resourceVersionMatch") != "NotOlderThan":
            message = "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
            raise ApiError(422, f'ListOptions.meta.k8s.io "" is invalid: {message}')
        with self._cond:
            now = time.time()
            self._advance(now)
            since = query.get("resourceVersion")
            if send_initial == "true" or (not send_initial and since in (None, "", "0")):
                initial = [("ADDED", o) for o in self._objects(res, ns, now) if wanted(o)]
                if send_initial and query.get("allowWatchBookmarks") == "true":
                    end = _bookmark(res, self._rv)
                    end["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                    initial.append(("BOOKMARK", end))
                return wanted, initial, self._rv
            if since in (None, "", "0"):  # sendInitialEvents=false: only what comes next
                return wanted, [], self._rv
            if not since.isdigit():
                raise ApiError(400, f"invalid resource version: {since!r}")
            return wanted, [], int(since)

    def _watch_next(self, wanted, after, wait):
        """Waits up to ``wait`` seconds for events newer than ``after``; returns them and
        the resourceVersion to continue after."""
        with self._cond:
            if self._rv <= after and not self._stopping.is_set():
                self._cond.wait(wait)
            self._advance(time.time())
            if after < self._window_start:
                message = f"too old resource version: {after} ({self._window_start + 1})"
                raise ApiError(410, message)
            events = [(kind, obj) for rv, kind, obj in self._events if rv > after and wanted(obj)]
            return events, max(after, self._rv)

    # -- TLS ---------------------------------------------------------------------------------
    def _make_tls(self):
        ca_key, ca = _issue("kubesim-ca", None, None)
        server_key, server = _issue("kubesim", ca_key, ca, server=True)
        self.ca_pem = _pem(ca)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:  # ssl loads certificate chains only from files
            cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_file.write_text(_pem(server))
            key_file.write_text(_pem(server_key))
            context.load_cert_chain(cert_file, key_file)
        if self.client_cert:
            client_key, client = _issue("sim-user", ca_key, ca, organization="system:masters")
            self.client_cert_pem, self.client_key_pem = _pem(client), _pem(client_key)
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self.ca_pem)
        return context


def _owner(obj):
    meta = obj["metadata"]
    owner = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"]}
    return {**owner, "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _default_spec(spec):
    """API defaulting, applied on create and on every update as the apiserver does."""
    spec.setdefault("replicas", 1)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("revisionHistoryLimit", 10)
    rolling = {"maxUnavailable": "25%", "maxSurge": "25%"}
    spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": rolling})
    if spec.get("paused") is False:
        del spec["paused"]  # false is the zero value, omitted on the wire


def _max_unavailable(spec):
    """deploymentutil.MaxUnavailable: how many replicas may be unavailable (ResolveFenceposts
    rounds maxSurge up and maxUnavailable down, and allows 1 when both come to 0)."""
    replicas, strategy = spec["replicas"], spec["strategy"]
    if not isinstance(strategy, dict) or strategy.get("type") != "RollingUpdate" or not replicas:
        return 0
    rolling = strategy.get("rollingUpdate") or {}

    def scaled(value, round_up):
        if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
            share = int(value[:-1]) * replicas / 100
            return math.ceil(share) if round_up else math.floor(share)
        return value if isinstance(value, int) else 0

    surge = scaled(rolling.get("maxSurge", "25%"), round_up=True)
    unavailable = scaled(rolling.get("maxUnavailable", "25%"), round_up=False)
    return min(replicas, 1 if surge == unavailable == 0 else unavailable)


def _delete_options(req):
    """The DELETE's DeleteOptions: its body if it has one, else its query parameters (the
    apiserver reads only one of the two), checked as ValidateDeleteOptions does."""
    options, query = req.body, req.query
    if options is None:
        options = {k: query[k] for k in ("propagationPolicy",) if k in query}
        if "dryRun" in query:
            options["dryRun"] = [query["dryRun"]]
        if "orphanDependents" in query:
            options["orphanDependents"] = query["orphanDependents"] == "true"
        if "gracePeriodSeconds" in query:
            text = query["gracePeriodSeconds"]
            if not re.fullmatch(r"-?\d+", text):
                raise ApiError(400, f'strconv.ParseInt: parsing "{text}": invalid syntax')
            options["gracePeriodSeconds"] = int(text)
    grace = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
    if not (
        isinstance(options, dict)
        and (grace is None or (isinstance(grace, int) and not isinstance(grace, bool)))
        and isinstance(options.get("preconditions") or {}, dict)
        and isinstance(options.get("dryRun") or [], list)
    ):
        raise ApiError(400, "the request body is not a valid DeleteOptions object")
    policy, errors = options.get("propagationPolicy"), []
    if policy is not None and options.get("orphanDependents") is not None:
        reason = "orphanDependents and deletionPropagation cannot be both set"
        errors.append(f'propagationPolicy: Invalid value: "{policy}": {reason}')
    if policy not in (None, "Foreground", "Background", "Orphan"):
        supported = '"Foreground", "Background", "Orphan", "nil"'
        errors.append(
            f'propagationPolicy: Unsupported value: "{policy}": supported values: {supported}'
        )
    errors += [
        f'dryRun: Unsupported value: "{value}": supported values: "All"'
        for value in options.get("dryRun") or []
        if value != "All"
    ]
    if errors:  # an aggregate of several errors prints as a list
        text = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
        details = {"group": "meta.k8s.io", "kind": "DeleteOptions"}
        raise ApiError(422, f'DeleteOptions.meta.k8s.io "" is invalid: {text}', details)
    return options


def _validate(name, spec, old_spec):
    def is_count(value, minimum):
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    complete = all(isinstance(c, dict) and c.get("name") and c.get("image") for c in containers)
    selector = old_spec["selector"]["matchLabels"]
    checks = (
        (is_count(spec["replicas"], 0), "spec.replicas", "must be an integer >= 0"),
        (is_count(spec["revisionHistoryLimit"], 0), "spec.revisionHistoryLimit", "must be >= 0"),
        (
            is_count(spec["progressDeadlineSeconds"], 1),
            "spec.progressDeadlineSeconds",
            "must be > 0",
        ),
        (isinstance(spec.get("paused", False), bool), "spec.paused", "must be a boolean"),
        (spec.get("selector") == old_spec["selector"], "spec.selector", "field is immutable"),
        (
            all(labels.get(k) == v for k, v in selector.items()),
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ),
        (
            containers and complete,
            "spec.template.spec.containers",
            "every container needs a name and an image",
        ),
    )
    for ok, field, message in checks:
        if not ok:
            raise invalid(name, field, message)


def _changed_fields(old, new):
    """The FieldsV1 set of the fields of ``new`` that differ from ``old``."""
    old = old if isinstance(old, dict) else {}
    return {
        f"f:{k}": _changed_fields(old.get(k), v) if isinstance(v, dict) else {}
        for k, v in new.items()
        if old.get(k) != v
    }


def _track_manager(meta, manager, fields, now):
    """Adds the written fields to the manager's managedFields entry (operation Update)."""
    entries = meta.setdefault("managedFields", [])
    entry = next(
        (e for e in entries if (e["manager"], e["operation"]) == (manager, "Update")), None
    )
    if entry is None:
        entry = {"manager": manager, "operation": "Update", "apiVersion": "apps/v1"}
        entries.append(entry)
    entry.update(time=ts(now), fieldsType="FieldsV1")
    entry["fieldsV1"] = merge(entry.get("fieldsV1", {}), fields, strategic=False)


def _issue(common_name, issuer_key, issuer, *, server=False, organization=None):
    """A throw-away EC certificate: a self-signed CA without issuer, else a leaf."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key, now, ca = ec.generate_private_key(ec.SECP256R1()), datetime.now(UTC), issuer is None
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        names.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(names)
    flags = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment"), False)
    flags.update(dict.fromkeys(("key_agreement", "encipher_only", "decipher_only"), False))
    usage = x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, **flags)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if ca else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not ca:  # strict verifiers (e.g. Python 3.13's default) want AKI and EKU on leaves
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(aki, critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    if server:
        sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _pem(item):
    from cryptography.hazmat.primitives import serialization as s

    if hasattr(item, "private_bytes"):
        return item.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode()
    return item.public_bytes(s.Encoding.PEM).decode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not block stop()

    def __init__(self, sim, port, tls_context):
        self.sim, self.tls_context, self.connections = sim, tls_context, set()
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self):
        sock, address = super().get_request()
        if self.tls_context:  # the handshake then happens in the connection's own thread
            sock = self.tls_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address

    def handle_error(self, request, client_address):
        pass  # failed TLS handshakes and clients that hang up are part of the tests

    def close_connections(self):
        for conn in self.connections.copy():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked watch streams
    timeout = 60  # drops idle keep-alive connections and stuck TLS handshakes
    server: _Server

    def setup(self):
        self.server.connections.add(self.request)
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACKs add 40 ms to every request on a kept-alive connection.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def finish(self):
        self.server.connections.discard(self.request)
        super().finish()

    def log_message(self, format, *args):
        if self.server.sim.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        sim, url = self.server.sim, urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req = RecordedRequest(self.command, url.path, query, self.headers, body, content_type)
        rule = sim._record(req)
        try:
            if rule and rule.seconds:
                sim._stopping.wait(rule.seconds)
            if rule and not rule.applied and (rule.status or rule.drop):
                return self._fault(rule, req.path)
            sim._authenticate(self.headers)
            if raw and body is None:
                raise ApiError(400, "the request body is not valid JSON")
            if req.method == "GET" and query.get("watch") in ("true", "1"):
                m = PATH_RE.fullmatch(req.path)
                if not (m and m["res"] in ("deployments", "pods") and not m["name"]):
                    message = "kubesim can only watch collections of deployments and pods"
                    raise ApiError(400, message)
                sim._authorize(req.method, m)
                return self._watch(sim, m["res"], m["ns"], query)
            answer = sim._handle(req)
            if rule and rule.applied:
                return self._fault(rule, req.path)
            self._send(*answer)
        except ApiError as error:
            self._send(error.code, error.status(), error.headers)
        except Exception as error:  # a simulator bug must answer 500, not hang the client
            self._send(500, ApiError(500, f"Internal error occurred: {error!r}").status())

    do_PATCH = do_PUT = do_DELETE = do_POST = do_GET

    def _fault(self, rule, path):
        """An injected fault's answer: its status, or none at all (the connection closed)."""
        if not rule.drop:
            raise _injected(rule, path)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    def _send(self, code, body, headers=None):
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client is gone (it may have timed out)

    def _watch(self, sim, res, ns, query):
        """Streams newline-delimited JSON watch events with chunked transfer encoding."""
        # A bad query is answered before the stream starts; a resourceVersion that is too old
        # shows only later, as an ERROR event in the stream (both as the apiserver does).
        wanted, events, after = sim._watch_open(res, ns, query)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        poll = max(0.01, min(sim.step / 2, 0.5))  # look at the rollouts twice a step
        bookmarks = query.get("allowWatchBookmarks") == "true"
        bookmarked = time.monotonic()
        try:
            while True:
                for event_type, obj in events:
                    self._chunk({"type": event_type, "object": obj})
                remaining = deadline - time.monotonic()
                if sim._stopping.is_set():
                    break
                # Bookmarks: every bookmark_seconds, and as the watch times out (KEP-956), so
                # a client resumes after what it was not sent, not from its last event.
                if bookmarks and (
                    remaining <= 0 or time.monotonic() - bookmarked >= sim.bookmark_seconds
                ):
                    self._chunk({"type": "BOOKMARK", "object": _bookmark(res, after)})
                    bookmarked = time.monotonic()
                if remaining <= 0:
                    break
                wait = min(poll, remaining, sim.bookmark_seconds if bookmarks else poll)
                events, after = sim._watch_next(wanted, after, wait)
        except ApiError as error:  # e.g. 410 Expired: an ERROR event, as the apiserver sends
            with contextlib.suppress(OSError):
                self._chunk({"type": "ERROR", "object": error.status()})
        except OSError:
            return  # the client hung up
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, event):
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _bookmark(res, resource_version):
    """A BOOKMARK's object: only the kind and the resourceVersion the stream has reached."""
    version = "v1" if res == "pods" else "apps/v1"
    meta = {"resourceVersion": str(resource_version)}
    return {"kind": KINDS[res], "apiVersion": version, "metadata": meta}


def _injected(rule, path):
    m = PATH_RE.fullmatch(path)
    if rule.status == 409 and m and m["name"]:
        return conflict(m["res"], m["name"])
    if rule.status == 429:
        headers = {"Retry-After": str(rule.retry_after)}
        details = {"retryAfterSeconds": rule.retry_after}
        return ApiError(429, "Too many requests, please try again later.", details, headers)
    return ApiError(rule.status, f"Internal error occurred: kubesim injected {rule.status}")


DEMO = (  # namespace, name, replicas, image, tier, team, paused
    ("shop", "web", 3, "nginx:1.27", "frontend", "storefront", False),
    ("shop", "api", 2, "ghcr.io/example/shop-api:2.4.1", "backend", "storefront", False),
    ("shop", "worker", 2, "ghcr.io/example/shop-worker:2.4.1", "worker", "fulfilment", False),
    ("payments", "checkout", 3, "ghcr.io/example/checkout:1.9.0", "backend", "payments", False),
    ("payments", "ledger", 1, "ghcr.io/example/ledger:0.7.3", "backend", "payments", True),
)


# Marks of the tools that also deploy some demo Deployments (the pages name them).
DEMO_MANAGERS = {
    "api": {"app.kubernetes.io/managed-by": "Helm"},
    "checkout": {"argocd.argoproj.io/instance": "payments"},
}


def seed_demo(sim):
    """Demo Deployments in the namespaces ``shop`` and ``payments`` (payments/ledger is
    paused, so kubectl would refuse to restart it; api is Helm's, checkout Argo CD's)."""
    for namespace, name, replicas, image, tier, team, paused in DEMO:
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace}
        labels.update(tier=tier, team=team, **DEMO_MANAGERS.get(name, {}))
        sim.add_deployment(
            namespace, name, labels=labels, replicas=replicas, image=image, paused=paused
        )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.kubesim", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--token", help="require this bearer token")
    parser.add_argument("--demo", action="store_true", help="serve the demo deployments")
    parser.add_argument("--step", type=float, default=1.0, help="seconds per rollout step")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the server to this file")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)
    sim = KubeSimulator(
        args.token, rollout_step_seconds=args.step, port=args.port, verbose=args.verbose
    ).start()
    if args.demo:
        seed_demo(sim)
    if args.kubeconfig:
        sim.kubeconfig(args.kubeconfig)
    print(f"kubesim serving {sim.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
