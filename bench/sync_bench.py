"""Issue 15 §3: `sync_applications` over 5,000 Deployments vs a bare paginated LIST of them.

The simulator (in this process, on loopback) holds 5,000 Deployments in 10 namespaces: 2,500
applications of two Deployments each, five namespaces apart (so on different pages), owned by
50 teams. The baseline is the LIST alone, as cheap as the official client makes it: every page
(LIST_PAGE_SIZE, the sync's) read with `_preload_content=False` and json.loads, no models. The
sync is measured twice: into an empty database (every application, team, owner row and
binding created) and again over its own result (nothing to write). Baseline and sync alternate
round by round; the medians are compared. Every sync runs inside a transaction rolled back at
the end, so the database is left as it was found.

Queries are counted per page: each query is put down to the pages the simulator had served
when it ran, so a page's count is what the sync wrote for it before asking for the next. The
last page's count also holds the unbinding and the audit event.

The simulator serves a LIST page by copying that page only (ListSimulator), as an API server
reads a page from etcd; tests.kubesim copies every Deployment per request, which would add
the same large constant to both sides and flatter the ratio.

    .venv/bin/python -m bench.sync_bench [--deployments 5000] [--rounds 3]

Standalone it creates (and drops) its own database, BENCH_DATABASE_URL or cratos_sync_bench;
`run(out)` expects Django set up on a migrated database, as bench/run.py has it.
"""

import argparse
import base64
import bisect
import copy
import json
import multiprocessing
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.audit_bench import drop_database, setup_django
from bench.sim import BenchSimulator
from tests.kubesim import ApiError

TARGET_RATIO = 2.0
SIM_TOKEN = "sync-bench-token"
CLUSTER = "sync-bench"
NAMESPACES = 10
TEAMS = 50


class ListSimulator(BenchSimulator):
    """Serves an unfiltered LIST of Deployments by copying only the page asked for."""

    def _list(self, res, ns, query, now):
        if res != "deployments" or query.get("labelSelector") or query.get("fieldSelector"):
            return super()._list(res, ns, query, now)
        keys = sorted(f"{n}/{name}" for n, name in self._deployments if ns in (None, n))
        start = 0
        if query.get("continue"):
            try:
                after = json.loads(base64.urlsafe_b64decode(query["continue"]))["start"]
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid") from None
            start = bisect.bisect_right(keys, after)
        limit = int(query.get("limit") or 0) or len(keys)
        page = keys[start : start + limit]
        meta = {"resourceVersion": str(self._rv)}
        if start + limit < len(keys):
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"start": page[-1]}).encode()
            ).decode()
            meta["remainingItemCount"] = len(keys) - start - limit
        items = []
        for key in page:
            obj = copy.deepcopy(self._deployments[tuple(key.split("/", 1))].obj)
            del obj["kind"], obj["apiVersion"]
            items.append(obj)
        return {"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": meta, "items": items}


def seed(sim: ListSimulator, deployments: int) -> None:
    half = deployments // 2
    per_namespace = deployments // NAMESPACES
    for index in range(deployments):
        application = index % half
        labels = {
            "app.kubernetes.io/name": f"svc-{application:05d}",
            "app.kubernetes.io/part-of": f"team-{application % TEAMS:02d}",
            "tier": ("web", "api", "worker")[application % 3],
        }
        namespace = f"ns-{index // per_namespace:02d}"
        sim.add_deployment(namespace, f"svc-{application:05d}-{index}", labels=labels)


def bare_list(url: str) -> int:
    """The baseline: every Deployment, paged as the sync pages, with the official client."""
    from kubernetes.client import ApiClient, AppsV1Api, Configuration

    from redeploy.kube.client import LIST_PAGE_SIZE

    configuration = Configuration(host=url)
    configuration.api_key = {"authorization": SIM_TOKEN}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    count, token = 0, None
    with ApiClient(configuration) as client:
        apps = AppsV1Api(client)
        while True:
            response = apps.list_deployment_for_all_namespaces(
                limit=LIST_PAGE_SIZE, _continue=token, _preload_content=False
            )
            page = json.loads(response.data)
            count += len(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return count


def serve(deployments: int, pipe) -> None:
    """The API server, in a process of its own as a real one is never in the product's."""
    with ListSimulator(SIM_TOKEN, rollout_step_seconds=0.001) as sim:
        seed(sim, deployments)
        pipe.send(sim.url)
        pipe.recv()  # until the benchmark is done


@contextmanager
def api_server(deployments: int):
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=serve, args=(deployments, theirs), daemon=True)
    process.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(10)


def timed_sync(**options) -> tuple[float, int, object]:
    """Seconds, queries and summary of one sync of the benchmark's cluster."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from redeploy.application_sync import sync_applications

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        summary = sync_applications(cluster_name=CLUSTER, **options)
        elapsed = time.perf_counter() - started
    return elapsed, len(queries), summary


def run(out: dict, *, deployments: int = 5000, rounds: int = 3) -> None:
    from django.db import transaction

    from redeploy.models import KubernetesCluster

    with api_server(deployments) as url:
        time.sleep(0.01)
        listed = bare_list(url)  # warm: connections, the simulator's settled statuses
        assert listed == deployments, listed
        lists, cold, warm = [], [], []
        with transaction.atomic():
            KubernetesCluster.objects.create(
                name=CLUSTER, server=url, token=SIM_TOKEN, allow_plain_http=True
            )
            # What a sync costs besides its pages: one LIST of an empty namespace, no writes.
            fixed = timed_sync(namespaces=["nothing-here"])[1]
            for _ in range(rounds):
                started = time.perf_counter()
                bare_list(url)
                lists.append(time.perf_counter() - started)
                with transaction.atomic():
                    elapsed, queries, summary = timed_sync()
                    cold.append(elapsed)
                    transaction.set_rollback(True)
            assert summary.deployments == deployments and summary.bindings_created == deployments
            timed_sync()  # the database as a sync left it
            for _ in range(rounds):
                warm.append(timed_sync()[0])
            transaction.set_rollback(True)
    baseline = statistics.median(lists)
    ratio = statistics.median(cold) / baseline
    out["sync_applications"] = {
        "deployments": deployments,
        "pages": summary.pages,
        "list_seconds": round(baseline, 4),
        "sync_seconds": round(statistics.median(cold), 4),
        "resync_seconds": round(statistics.median(warm), 4),
        "ratio": round(ratio, 3),
        "ratio_resync": round(statistics.median(warm) / baseline, 3),
        "target": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO and statistics.median(warm) / baseline <= TARGET_RATIO,
        "queries_per_page": round((queries - fixed) / summary.pages, 1),
        "queries": queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cratos_sync_bench"
    )
    drop_database(url, recreate=True)
    try:
        # The cluster's token is stored encrypted, as run.py's are.
        os.environ.setdefault("FIELD_ENCRYPTION_KEY", "bench-only-field-encryption-key")
        setup_django(url)
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        out: dict = {}
        run(out, deployments=args.deployments, rounds=args.rounds)
        print(json.dumps(out, indent=2))
        connections.close_all()
    finally:
        drop_database(url, recreate=False)


if __name__ == "__main__":
    main()
