"""The Kubernetes-API test server of the benchmark, in its own process.

tests.kubesim as it is, with two additions for measuring:
- it notes when each PATCH arrived (time.monotonic(): CLOCK_MONOTONIC, one clock for every
  process on the machine) and answers `GET /bench/patches?after=N&wait=S` with the PATCHes
  after the N-th, waiting up to S seconds for one to arrive; `GET /bench/requests?after=N`
  lists every request after the N-th (arrival, method, path, user agent), to count what a
  client asked; `GET /bench/completed` lists when each Deployment's status became one that
  `kubectl rollout status` calls complete (arrival, namespace, name);
- a Deployment whose rollout is over is not looked at again on every request, and a GET of one
  Deployment copies only that one. kubesim brings all of them up to date and copies a whole
  namespace per request, so with 200 Deployments a request costs milliseconds more, which would
  weigh on the product (three requests per redeploy) and the baseline (one) unequally. Both
  shortcuts answer exactly what kubesim answers (tests/test_kubesim.py passes against
  this class too).

    .venv/bin/python bench/sim.py --token T --step 0.001 --deployment bench/web[:replicas]
        [--apps 200]
        [--tls]

--tls serves HTTPS with a throw-away CA (kubectl sends a kubeconfig's token only over TLS).
Prints one JSON line, {"url": ..., "ca": PEM or null}, when it serves; runs until stdin closes.
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kubesim import PATH_RE, KubeSimulator, not_found

APP_NAMESPACE = "bench-apps"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _complete(deployment: dict) -> bool:
    """kubectl rollout status would say "successfully rolled out" of this Deployment."""
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment["status"]
    updated = status.get("updatedReplicas", 0)
    return (
        status.get("observedGeneration", 0) >= meta["generation"]
        and updated == spec["replicas"]
        and status.get("replicas", 0) == updated
        and status.get("availableReplicas", 0) == updated
    )


def app_name(index: int) -> str:
    return f"app-{index:03d}"


def _restarted_at(body) -> str | None:
    try:
        return body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    except (KeyError, TypeError):
        return None


class BenchSimulator(KubeSimulator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._patches: list[tuple[float, str, str]] = []  # (arrived, path, restartedAt)
        self._seen: list[tuple[float, str, str]] = []  # (arrived, method, path), every request
        self._unsettled: set[tuple[str, str]] = set()
        self._completed: list[tuple[float, str, str]] = []  # (written, namespace, name)

    # -- arrival times ----------------------------------------------------------------------
    def _record(self, request):
        arrived = time.monotonic()
        rule = super()._record(request)
        with self._cond:
            agent = request.headers.get("User-Agent") or ""
            self._seen.append((arrived, request.method, request.path, agent))
        if request.method == "PATCH":
            with self._cond:
                self._patches.append((arrived, request.path, _restarted_at(request.body)))
                self._cond.notify_all()
        return rule

    def _patches_after(self, query) -> dict:
        after = int(query.get("after") or 0)
        wait = float(query.get("wait") or 0)
        with self._cond:
            self._cond.wait_for(lambda: len(self._patches) > after, timeout=wait)
            return {"count": len(self._patches), "patches": self._patches[after:]}

    def _emit(self, obj, event_type):
        super()._emit(obj, event_type)
        if obj["kind"] == "Deployment" and _complete(obj):
            meta = obj["metadata"]
            self._completed.append((time.monotonic(), meta["namespace"], meta["name"]))

    # -- only what can still change ---------------------------------------------------------
    def _handle(self, req):
        if req.path == "/bench/patches":
            return 200, self._patches_after(req.query)
        if req.path == "/bench/completed":
            with self._cond:
                return 200, {"completed": self._completed}
        if req.path == "/bench/requests":
            after = int(req.query.get("after") or 0)
            with self._cond:
                return 200, {"count": len(self._seen), "requests": self._seen[after:]}
        m = PATH_RE.fullmatch(req.path.rstrip("/"))
        one_deployment = (
            req.method == "GET"
            and m
            and m["gv"] == "apis/apps/v1"
            and m["res"] == "deployments"
            and m["ns"]
            and m["name"]
            and not m["sub"]
            and req.query.get("watch") not in ("true", "1")
        )
        if not one_deployment:
            return super()._handle(req)
        self._authorize(req.method, m)
        with self._cond:
            self._advance(time.time())
            d = self._deployments.get((m["ns"], m["name"]))
            if d is None:
                raise not_found("deployments", m["name"])
            return 200, copy.deepcopy(d.obj)

    def _advance(self, now):
        everything = self._deployments
        keys = [key for key in self._unsettled if key in everything]
        self._deployments = {key: everything[key] for key in keys}
        try:
            super()._advance(now)
        finally:
            self._deployments = everything
        for key in keys:
            d = everything[key]
            # No rollout running and the latest spec observed: its status cannot change.
            if d.rollout_from is None and now >= d.spec_changed + self.step:
                self._unsettled.discard(key)

    def _spec_written(self, d, old_spec, now):
        super()._spec_written(d, old_spec, now)
        meta = d.obj["metadata"]
        self._unsettled.add((meta["namespace"], meta["name"]))

    def add_deployment(self, namespace, name, **kwargs):
        obj = super().add_deployment(namespace, name, **kwargs)
        with self._cond:
            self._unsettled.add((namespace, name))
        return obj

    def stall(self, namespace, name, stalled=True):
        with self._cond:
            self._unsettled.add((namespace, name))
        super().stall(namespace, name, stalled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--step", type=float, default=0.001, help="seconds per rollout step")
    parser.add_argument(
        "--deployment", action="append", default=[], help="namespace/name[:replicas]"
    )
    parser.add_argument("--apps", type=int, default=0, help=f"app-NNN in {APP_NAMESPACE}")
    parser.add_argument("--tls", action="store_true", help="HTTPS with a throw-away CA")
    args = parser.parse_args()
    sim = BenchSimulator(args.token, rollout_step_seconds=args.step, tls=args.tls).start()
    for item in args.deployment:
        where, _, replicas = item.partition(":")
        namespace, name = where.split("/")
        sim.add_deployment(namespace, name, replicas=int(replicas or 1))
    for index in range(args.apps):
        sim.add_deployment(APP_NAMESPACE, app_name(index))
    print(json.dumps({"url": sim.url, "ca": sim.ca_pem}), flush=True)
    try:
        sys.stdin.read()  # until the benchmark closes our stdin (or dies)
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
