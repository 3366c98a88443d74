"""Issue 15 §3, many at once: figures 8 and 9 (run against the services bench/run.py starts).

8. One batch of 1,000 redeploys across 3 clusters (3 simulator processes, 10 namespaces each),
   one request, one task: request sent -> the last PATCH arrived, vs 1,000 bare PATCHes of the
   same Deployments sent with the worker's concurrency (KUBERNETES_PARALLEL_REQUESTS per
   cluster, the clusters side by side), by warm official clients. Then every rollout is followed
   to SUCCEEDED; the API requests the worker sent after the PATCHes and the broker messages the
   worker received are counted per rollout (no per-target polling: both well under one).
9. 100 users each redeploying their own application at the same moment, through the web:
   gunicorn as deployed (gunicorn.conf.py, its own worker count) and a worker as deployed
   (deploy/base/worker.yaml: prefork, --concurrency=4), on a broker database of their own;
   from each request sent to its PATCH's arrival, the p95 of the 100 vs the median of one
   user alone; and beside it the CPU floor: the CPU-seconds all parties spend from one
   request to its PATCH x 100 / the usable cores (on 2 cores the 2x target is out of reach
   of any code: the floor is seconds), with the burst's CPU by party.
"""

import os
import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench import adapters
from bench.cpu_use import CpuUse
from bench.harness import (
    DATABASE_URL,
    PRODUCT_AGENT,
    REDIS_URL,
    RESTARTED_AT,
    SIM_TOKEN,
    STRATEGIC_MERGE_PATCH,
    log,
    percentile,
    service_env,
    start_sim,
    start_web,
    start_worker,
    summary,
    wait_until,
)
from bench.parties import Api, Cluster, Product, wait_finished

BATCH_CLUSTERS = 3
BATCH_NAMESPACES = 10
# The worker's KUBERNETES_PARALLEL_REQUESTS (its default): the bare PATCHes' concurrency too.
PARALLEL_PER_CLUSTER = 8
# Rollouts that take a few steps, so they are followed, not found over at the first look.
BATCH_ROLLOUT_STEP = 0.2
# 1,000 rollouts followed to their end on a busy machine take longer than FINISH_SECONDS.
FOLLOWED_SECONDS = 600
USERS_NAMESPACE = "users"
# The worker as deploy/base/worker.yaml runs it.
DEPLOYED_WORKER = {"pool": "prefork", "concurrency": 4}
TASK_RECEIVED = re.compile(r"Task (\S+)\[[^\]]+\] received")


def batch_name(index: int) -> str:
    return f"batch-{index:04d}"


def _where(index: int) -> tuple[int, str]:
    """The cluster (its number) and namespace of the index-th application."""
    return index % BATCH_CLUSTERS, f"batch-{(index // BATCH_CLUSTERS) % BATCH_NAMESPACES}"


class _BarePatcher:
    """Warm official clients, one per cluster, with a connection for each PATCH in flight."""

    def __init__(self, url: str):
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = url
        configuration.api_key = {"authorization": f"Bearer {SIM_TOKEN}"}
        configuration.connection_pool_maxsize = PARALLEL_PER_CLUSTER
        self.apps = client.AppsV1Api(client.ApiClient(configuration))
        self.counter = 0

    def patch(self, namespace: str, name: str, value: str) -> None:
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: value}}}}}
        self.apps.patch_namespaced_deployment(
            name, namespace, body, field_manager="bench", _content_type=STRATEGIC_MERGE_PATCH
        )


def _received_tasks(worker, since: int) -> dict[str, int]:
    """The tasks the worker received since its log's character `since`, by name."""
    counts: dict[str, int] = {}
    for name in TASK_RECEIVED.findall(worker.output()[since:]):
        counts[name] = counts.get(name, 0) + 1
    return counts


def figure_batch(
    product: Product, api: Api, worker, stack: ExitStack, logs: Path, *, redeploys: int
) -> dict:
    names = [batch_name(i) for i in range(redeploys)]
    placed: list[list[tuple[str, str]]] = [[] for _ in range(BATCH_CLUSTERS)]
    for index, name in enumerate(names):
        cluster, namespace = _where(index)
        placed[cluster].append((namespace, name))
    urls = []
    for number, deployments in enumerate(placed):
        _sim, url, _ca = start_sim(
            stack,
            logs,
            f"kubesim-batch-{number}",
            deployments=deployments,
            step=BATCH_ROLLOUT_STEP,
        )
        urls.append(url)
    adapters.add_bindings(
        clusters={f"batch-{n}": {"server": url, "token": SIM_TOKEN} for n, url in enumerate(urls)},
        bindings=[
            (name, f"batch-{_where(i)[0]}", _where(i)[1], name) for i, name in enumerate(names)
        ],
    )
    clusters = [Cluster(url) for url in urls]
    patchers = [_BarePatcher(url) for url in urls]
    pools = [ThreadPoolExecutor(max_workers=PARALLEL_PER_CLUSTER) for _ in urls]
    rounds = iter(range(10**6))

    def bare_run() -> float:
        value = f"bare-{next(rounds)}"
        started = time.monotonic()
        sent = [
            pools[cluster].submit(patchers[cluster].patch, namespace, name, value)
            for cluster, deployments in enumerate(placed)
            for namespace, name in deployments
        ]
        wait(sent)
        for future in sent:
            future.result()
        for cluster, deployments in zip(clusters, placed, strict=True):
            cluster.patches(at_least=len(deployments))
        return time.monotonic() - started

    def product_run() -> dict:
        product.approve(names)
        for cluster in clusters:
            cluster.requests_since_last()
        log_offset = len(worker.output())
        started = time.monotonic()
        operation_ids = api.redeploy_batch(
            [(name, _where(i)[1], name) for i, name in enumerate(names)]
        )
        posted = time.monotonic() - started
        arrivals = [
            arrival
            for cluster, deployments in zip(clusters, placed, strict=True)
            for arrival in cluster.patches(at_least=len(deployments))
        ]
        applied = max(arrived for arrived, _path, _restarted_at in arrivals) - started
        adapters.wait_finished(
            operation_ids,
            until=lambda condition, what: wait_until(
                condition, seconds=FOLLOWED_SECONDS, what=what, interval=0.5
            ),
        )
        finished = time.monotonic() - started
        last_patch = max(arrived for arrived, _path, _restarted_at in arrivals)
        following = sum(
            1
            for cluster in clusters
            for arrived, method, _path, agent in cluster.requests_since_last()
            if agent == PRODUCT_AGENT and arrived > last_patch
        )
        tasks = _received_tasks(worker, log_offset)
        rollout_tasks = tasks.get("redeploy.run_redeploys", 0) + tasks.get(
            "redeploy.follow_rollouts", 0
        )
        return {
            "applied_s": applied,
            "finished_s": finished,
            "api_requests_s": posted,
            "api_requests_after_patches": following,
            "api_requests_per_rollout": following / redeploys,
            "broker_messages": tasks,
            "rollout_messages_per_rollout": rollout_tasks / redeploys,
        }

    bare_runs = [bare_run()]
    taken = []
    for _ in range(2):
        run = product_run()
        bare_runs.append(bare_run())
        bare = (bare_runs[-2] + bare_runs[-1]) / 2
        taken.append(run | {"baseline_s": bare, "ratio": run["applied_s"] / bare})
        log(
            f"  batch of {redeploys}: applied in {run['applied_s']:.2f} s (bare "
            f"{bare:.2f} s), all followed in {run['finished_s']:.2f} s; per rollout "
            f"{run['api_requests_per_rollout']:.3f} API requests, "
            f"{run['rollout_messages_per_rollout']:.4f} broker messages ({run['broker_messages']})"
        )
    for pool in pools:
        pool.shutdown()
    # The worse of the rounds: two are too few for a median.
    best = max(taken, key=lambda r: r["ratio"])
    return {
        "redeploys": redeploys,
        "clusters": BATCH_CLUSTERS,
        "namespaces_per_cluster": BATCH_NAMESPACES,
        "product_restart_applied_s": best["applied_s"],
        "product_finished_s": best["finished_s"],
        "baseline_s": best["baseline_s"],
        "baseline_runs_s": bare_runs,
        "ratio": best["ratio"],
        "api_requests_per_rollout": max(r["api_requests_per_rollout"] for r in taken),
        "broker_messages_per_rollout": max(r["rollout_messages_per_rollout"] for r in taken),
        "rounds": taken,
        "how": f"one POST /api/v1/redeploys/ of {redeploys} redeploys (each on its own approved "
        f"authorization), {BATCH_CLUSTERS} bench/sim.py processes with {BATCH_NAMESPACES} "
        "namespaces each, one worker task: request sent -> the last PATCH recorded by an API "
        "server; baseline: the same Deployments PATCHed by warm official clients, "
        f"{PARALLEL_PER_CLUSTER} at a time per cluster (the worker's KUBERNETES_PARALLEL_"
        "REQUESTS), the clusters side by side; each batch against the bare runs before and "
        "after it, the worse of 2 rounds. Rollouts of a few steps "
        f"({BATCH_ROLLOUT_STEP} s each) followed to SUCCEEDED; API requests per rollout: those "
        "the worker sent after the last PATCH; broker messages per rollout: run_redeploys and "
        "follow_rollouts tasks the worker received (every task received is listed)",
    }


def figure_users(product: Product, stack: ExitStack, logs: Path, *, users: int) -> dict:
    names = [f"user-app-{n:03d}" for n in range(users)]
    sim, url, _ca = start_sim(
        stack, logs, "kubesim-users", deployments=[(USERS_NAMESPACE, name) for name in names]
    )
    adapters.add_bindings(
        clusters={"users": {"server": url, "token": SIM_TOKEN}},
        bindings=[(name, "users", USERS_NAMESPACE, name) for name in names],
    )
    people = adapters.more_requesters(product.fixtures, users)
    # A broker of their own: the benchmark's other worker must not take these tasks.
    broker = urlunsplit(urlsplit(REDIS_URL)._replace(path="/2"))
    env = service_env(broker)
    web, web_url = start_web(stack, logs, env, name="gunicorn-deployed", workers=None)
    worker = start_worker(stack, logs, env, name="celery-deployed", **DEPLOYED_WORKER)
    cpu = CpuUse(
        {"web (gunicorn)": web.pid, "worker (celery)": worker.pid, "API server (sim)": sim.pid},
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
    )
    stack.callback(cpu.close)
    cluster = Cluster(url)
    apis = [Api(web_url, person.api_token) for person in people]
    for person, name in zip(people, names, strict=True):
        adapters.approve(person, [name])

    def one(number: int) -> tuple[float, str]:
        sent = time.monotonic()
        operation_id = apis[number].redeploy(
            application=names[number], namespace=USERS_NAMESPACE, deployment=names[number]
        )
        return sent, operation_id

    def arrivals(count: int) -> dict[str, float]:
        return {
            path.rsplit("/", 1)[1]: arrived
            for arrived, path, _restarted_at in cluster.patches(at_least=count)
        }

    # One user alone, one after another (each user's own authorization); the CPU every party
    # spent from the request to its PATCH, and to the end of the operation.
    alone, to_restart, to_end = [], [], []
    for number in range(min(20, users)):
        before = cpu.mark()
        sent, operation_id = one(number)
        arrived = arrivals(1)[names[number]]
        to_restart.append(cpu.since(before)["all_but_client_s"])
        wait_finished([operation_id], interval=0.05)
        to_end.append(cpu.since(before)["all_but_client_s"])
        alone.append((arrived - sent) * 1000)
    for person, name in zip(people[: len(alone)], names, strict=False):
        adapters.approve(person, [name])

    # Everyone at the same moment.
    barrier = threading.Barrier(users)
    sent: dict[int, float] = {}
    operation_ids: list[str] = []

    def at_once(number: int) -> None:
        barrier.wait()
        moment, operation_id = one(number)
        sent[number] = moment
        operation_ids.append(operation_id)

    threads = [threading.Thread(target=at_once, args=(n,)) for n in range(users)]
    before = cpu.mark()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    arrived = arrivals(users)
    burst_to_restarts = cpu.since(before)
    together = [(arrived[names[n]] - sent[n]) * 1000 for n in range(users)]
    wait_finished(operation_ids, interval=0.1)
    burst_to_end = cpu.since(before)
    single, crowd = summary(alone), summary(together)
    ratio = crowd["p95"] / single["median"]
    cores = len(os.sched_getaffinity(0))
    # The first of the lone redeploys found cold processes (a web worker's first request):
    # the median is what a warm one costs.
    restart_cpu = statistics.median(to_restart)
    floor_ms = restart_cpu * users / cores * 1000
    log(
        f"  {users} users at once: p95 {crowd['p95']:.0f} ms, median {crowd['median']:.0f} ms; "
        f"one alone: median {single['median']:.0f} ms (ratio {ratio:.2f})"
    )
    log(
        f"  CPU floor {floor_ms:.0f} ms: {restart_cpu * 1000:.0f} ms of CPU from a request to "
        f"its PATCH (all parties, one alone; {statistics.median(to_end) * 1000:.0f} ms to its "
        f"end) x {users} / {cores} cores; p95 is {crowd['p95'] / floor_ms:.2f} x the floor"
    )
    for what, used in (("the last PATCH", burst_to_restarts), ("all finished", burst_to_end)):
        parties = ", ".join(f"{k} {v:.2f}" for k, v in used["by_party_s"].items())
        log(
            f"  CPU-seconds of the burst until {what}: {parties}; other programs on the "
            f"machine meanwhile {used['others_on_the_machine_s']:.2f}"
        )
    return {
        "users": users,
        "single_user_ms": single,
        "together_ms": crowd,
        "together_max_ms": max(together),
        "ratio_p95": ratio,
        "median_of_together_over_single": statistics.median(together) / single["median"],
        "p99_ms": percentile(together, 0.99),
        "cpu_floor_ms": floor_ms,
        "p95_over_cpu_floor": crowd["p95"] / floor_ms,
        "cpu_per_redeploy_alone_ms": {
            "to_patch": restart_cpu * 1000,
            "to_end": statistics.median(to_end) * 1000,
        },
        "cpu_of_the_burst_s": {"to_last_patch": burst_to_restarts, "to_all_finished": burst_to_end},
        "usable_cores": cores,
        "how": "each user (own API token, own approved ticket, own application) sends POST "
        "/api/v1/redeploys/ of one redeploy; request sent -> its PATCH recorded by the API "
        "server (bench/sim.py); gunicorn -c gunicorn.conf.py with its default worker count, a "
        "celery worker --pool=prefork --concurrency=4 as deploy/base/worker.yaml, on their own "
        "broker database; single user: 20 redeploys one after another, each followed to its "
        f"end; together: {users} threads released by one barrier. CPU floor: the CPU-seconds "
        "that web, worker, PostgreSQL, Redis and the API server spent from a lone request to "
        "its PATCH (median of the 20, from /proc) x users / usable cores: no schedule on this "
        "machine has the last of the PATCHes sooner; the burst's own CPU by party, and what "
        "other programs took meanwhile, are kept beside it",
    }
