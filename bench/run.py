"""Issue 6's benchmark: five figures, each against a baseline measured in the same run.

Everything real and on loopback: PostgreSQL (a database of its own, created and dropped), Redis
(database 0, emptied), gunicorn serving the product's API, a `celery worker` process on a real
broker, and the Kubernetes-API test server (bench/sim.py: tests.kubesim noting when each PATCH
arrives). Baselines and product are measured alternately where they can be, so load from
anything else on the machine weighs on both alike.

1. Redeploy overhead: POST /api/v1/redeploys/ answered 202 → the PATCH arrives at the API
   server, vs a bare warm official-client PATCH of the same Deployment (call → answer).
2. Authorization check: redeploy.authorization.live_token vs a raw Redis GET of the same key,
   and the Redis round trips per check.
3. Audit list page with 10,000 and 1,000,000 events (bench/audit_bench.py).
4. Throughput: 200 redeploys of 200 applications through one worker (one batch request, one
   task; also one request each, reported) vs 200 bare sequential PATCHes.
5. Peak memory (VmHWM) of the web process and the worker after the runs.

    scripts/bench [--redeploys 200] [--apps 200] [--audit-requests 100] [--skip-audit]
        [--broker redis|amqp] [--json bench/results.json]
"""

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))

from bench.sim import APP_NAMESPACE, app_name  # noqa: E402

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cratos_bench"
)
REDIS_URL = "redis://127.0.0.1:6379/0"
BROKERS = {
    "redis": "redis://127.0.0.1:6379/0",
    "amqp": "amqp://guest:guest@127.0.0.1:5672//",
}
SIM_TOKEN = "bench-sim-token"
FIGURE1_DEPLOYMENT = ("bench", "web")
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Seconds between two looks at a rollout in the worker (production default 2): the simulator's
# rollouts are instant, so each redeploy is finished after one look.
ROLLOUT_POLL_SECONDS = "0.05"
START_SECONDS = 60
FINISH_SECONDS = 120

TARGETS = {
    "redeploy_overhead": ("median ratio <= 2", lambda f: f["ratio_median"] <= 2),
    "authorization_check": (
        "ratio <= 1.5, <= 2 round trips",
        lambda f: f["ratio_median"] <= 1.5 and f["round_trips_per_check"] <= 2,
    ),
    "audit_list_page": (
        "p95(1M) <= 1.3 x p95(10k), same queries",
        lambda f: f["worst_ratio_p95"] <= 1.3 and f["same_query_count"],
    ),
    "throughput": ("ratio >= 0.5", lambda f: f["ratio"] >= 0.5),
    "peak_memory": ("none (reported)", None),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redeploys", type=int, default=200, help="figure 1 samples")
    parser.add_argument("--apps", type=int, default=200, help="figure 4 applications")
    parser.add_argument("--throughput-rounds", type=int, default=5, help="figure 4 rounds")
    parser.add_argument("--auth-checks", type=int, default=20_000, help="figure 2 samples")
    parser.add_argument("--audit-requests", type=int, default=100, help="figure 3, per size")
    parser.add_argument("--skip-audit", action="store_true", help="leave out figure 3")
    parser.add_argument("--broker", choices=sorted(BROKERS), default="redis")
    parser.add_argument("--pool", default="solo", help="the worker's --pool (solo, threads)")
    parser.add_argument("--concurrency", type=int, default=1, help="the worker's --concurrency")
    parser.add_argument("--json", type=Path, default=BENCH / "results.json")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    return parser.parse_args()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


def summary(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "min": min(values),
        "samples": len(values),
    }


# -- databases and Django ----------------------------------------------------------------------


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def recreate_database(url: str, *, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    name = sql.Identifier(database_name(url))
    admin_url = urlunsplit(urlsplit(url)._replace(path="/postgres", query=""))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if not drop_only:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(name))


def setup_django() -> None:
    # This process files and approves tickets; its own tasks (notices) run inline, so the
    # worker only ever sees the redeploys being measured.
    os.environ.update(
        DJANGO_SETTINGS_MODULE="cratos.settings",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL="",
        TASKS_IN_THREADS="false",
        DEBUG="false",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    # Without a broker kombu warns that it has no hostname whenever it is asked; it is not used.
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)


def machine_facts(broker: str) -> dict:
    from django.db import connection
    from django_redis import get_redis_connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (pg_version,) = cursor.fetchone()
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "redis": get_redis_connection("default").info("server")["redis_version"],
        "broker": broker,
        "git_commit": commit + ("+uncommitted changes" if dirty else ""),
        "load_average_at_start": _load_average(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# -- processes ---------------------------------------------------------------------------------


class Process:
    """A child process with its output in a log file; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, name: str, command: list[str], *, env: dict, logs: Path, **popen):
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("w")
        self.popen = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=popen.pop("stdout", self._log),
            stderr=self._log,
            **popen,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited ({self.popen.returncode}); see {self.log_path}:\n"
                + self.log_path.read_text()[-3000:]
            )

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._log.close()


def wait_until(condition, *, seconds: float, what: str, interval: float = 0.05, process=None):
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if process is not None:
            process.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out after {seconds} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(broker_url: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cratos.settings",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": broker_url,
        "TASKS_IN_THREADS": "false",
        "DEBUG": "false",
        "LOG_LEVEL": "INFO",  # the settings' default, as in production
        "REDEPLOY_ROLLOUT_POLL_SECONDS": ROLLOUT_POLL_SECONDS,
        "PYTHONUNBUFFERED": "1",
    }


def start_sim(stack: ExitStack, logs: Path, *, apps: int) -> tuple[Process, str]:
    namespace, name = FIGURE1_DEPLOYMENT
    sim = Process(
        "kubesim",
        [
            sys.executable,
            str(BENCH / "sim.py"),
            "--token",
            SIM_TOKEN,
            "--deployment",
            f"{namespace}/{name}",
            "--apps",
            str(apps),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        logs=logs,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stack.callback(sim.stop)
    stack.callback(lambda: sim.popen.stdin.close())
    line = sim.popen.stdout.readline()
    if not line:
        sim.check_alive()
    return sim, json.loads(line)["url"]


def start_web(stack: ExitStack, logs: Path, env: dict) -> tuple[Process, str]:
    port = free_port()
    web = Process(
        "gunicorn",
        [str(Path(sys.executable).parent / "gunicorn"), "cratos.wsgi", "-c", "gunicorn.conf.py"],
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"},
        logs=logs,
    )
    stack.callback(web.stop)
    url = f"http://127.0.0.1:{port}"
    import requests

    def ready():
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(ready, seconds=START_SECONDS, what="gunicorn", process=web)
    return web, url


def start_worker(stack: ExitStack, logs: Path, env: dict, *, pool: str, concurrency: int):
    worker = Process(
        "celery-worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cratos",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
            "--hostname=bench@%h",
        ],
        env=env,
        logs=logs,
    )
    stack.callback(worker.stop)
    wait_until(
        lambda: " ready." in worker.output(), seconds=START_SECONDS, what="celery", process=worker
    )
    return worker


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        return [int(x) for x in children.read_text().split()]
    return [
        int(stat.parent.name)
        for stat in Path("/proc").glob("[0-9]*/stat")
        if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid)
    ]


def memory_kib(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0])
    return fields


# -- the product's data ------------------------------------------------------------------------


class Product:
    """Users, the cluster and bindings in the database; tickets through the real services."""

    def __init__(self, sim_url: str, *, apps: int):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group, Permission
        from rest_framework.authtoken.models import Token

        from redeploy.models import Application, DeploymentBinding, KubernetesCluster
        from tickets.models import WorkOrder

        users = get_user_model().objects
        self.requester = users.create_user("bench-requester")
        self.requester.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="redeploy", codename="redeploy_application"
            )
        )
        self.approver = users.create_user("bench-approver")
        self.approver.groups.add(Group.objects.get(name="Approvers"))
        self.api_token = Token.objects.create(user=self.requester).key
        self.work_order = WorkOrder.objects.get(key="APPLICATION_REDEPLOY")
        cluster = KubernetesCluster.objects.create(name="bench", server=sim_url, token=SIM_TOKEN)
        namespace, name = FIGURE1_DEPLOYMENT
        bindings = [(name, namespace, name)] + [
            (app_name(i), APP_NAMESPACE, app_name(i)) for i in range(apps)
        ]
        for application_name, ns, deployment in bindings:
            application = Application.objects.create(
                name=application_name, tags=[{"key": "team", "value": "bench"}]
            )
            DeploymentBinding.objects.create(
                application=application, cluster=cluster, namespace=ns, deployment_name=deployment
            )

    def approve(self, application_names: list[str]):
        """A ticket filed, submitted and approved: the authorizations are minted in Redis."""
        from tickets import services

        ticket = services.create_ticket(
            applicant=self.requester,
            work_order=self.work_order,
            application_names=application_names,
            reason="Benchmark",
        )
        services.submit_ticket(ticket=ticket, actor=self.requester)
        return services.approve_ticket(ticket=ticket, approver=self.approver)


class Api:
    """The product's JSON API over HTTP, as a script would call it."""

    def __init__(self, url: str, token: str):
        import requests

        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def redeploy(self, *, application: str, namespace: str, deployment: str) -> str:
        response = self.session.post(
            f"{self.url}/api/v1/redeploys/",
            json={
                "applicationName": application,
                "namespace": namespace,
                "deploymentName": deployment,
            },
            timeout=30,
        )
        if response.status_code != 202:
            raise RuntimeError(
                f"POST /api/v1/redeploys/ answered {response.status_code}: {response.text[:500]}"
            )
        return response.json()["id"]

    def redeploy_batch(self, redeploys: list[tuple[str, str, str]]) -> list[str]:
        """One request for many (application, namespace, deployment): one task in the worker."""
        response = self.session.post(
            f"{self.url}/api/v1/redeploys/",
            json=[
                {"applicationName": a, "namespace": n, "deploymentName": d} for a, n, d in redeploys
            ],
            timeout=60,
        )
        if response.status_code != 202:
            raise RuntimeError(
                f"POST /api/v1/redeploys/ answered {response.status_code}: {response.text[:500]}"
            )
        return [item["id"] for item in response.json()]


class Cluster:
    """The baseline's side: a warm official client, and the simulator's PATCH arrivals."""

    def __init__(self, sim_url: str):
        import requests
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = sim_url
        configuration.api_key = {"authorization": f"Bearer {SIM_TOKEN}"}
        self.apps = client.AppsV1Api(client.ApiClient(configuration))
        self.sim_url = sim_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {SIM_TOKEN}"
        self.seen = 0
        self.counter = 0

    def bare_patch(self, namespace: str, name: str) -> float:
        """One bare strategic-merge PATCH, as `kubectl rollout restart` sends it; seconds."""
        self.counter += 1
        body = {
            "spec": {
                "template": {"metadata": {"annotations": {RESTARTED_AT: f"bare-{self.counter}"}}}
            }
        }
        started = time.perf_counter()
        self.apps.patch_namespaced_deployment(
            name,
            namespace,
            body,
            field_manager="bench",
            _content_type=STRATEGIC_MERGE_PATCH,
        )
        return time.perf_counter() - started

    def patches(self, *, at_least: int, seconds: float = FINISH_SECONDS) -> list:
        """The PATCHes that arrived since the last call, once there are at least `at_least`."""
        found: list = []
        deadline = time.monotonic() + seconds
        while len(found) < at_least:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise RuntimeError(
                    f"Only {len(found)} of {at_least} PATCHes arrived in {seconds} s"
                )
            answer = self.session.get(
                f"{self.sim_url}/bench/patches",
                params={"after": self.seen, "wait": min(wait, 5)},
                timeout=10,
            ).json()
            found.extend(answer["patches"])
            self.seen += len(answer["patches"])
        return found


def wait_finished(operation_ids: list[str], *, interval: float = 0.01) -> list:
    from redeploy.models import RedeployOperation

    finished = (RedeployOperation.State.SUCCEEDED, RedeployOperation.State.FAILED)

    def done():
        operations = list(RedeployOperation.objects.filter(pk__in=operation_ids))
        if len(operations) == len(operation_ids) and all(o.state in finished for o in operations):
            return operations
        return None

    operations = wait_until(
        done, seconds=FINISH_SECONDS, what="the redeploys to finish", interval=interval
    )
    failed = [o for o in operations if o.state != RedeployOperation.State.SUCCEEDED]
    if failed:
        raise RuntimeError(f"{len(failed)} redeploys failed, e.g.: {failed[0].message}")
    return operations


# -- figures -----------------------------------------------------------------------------------


def figure_authorization(product: Product, *, checks: int) -> dict:
    """live_token vs a raw GET of the same key on the same Redis client, call by call."""
    from django_redis import get_redis_connection

    from redeploy import authorization

    _namespace, name = FIGURE1_DEPLOYMENT
    product.approve([name])
    username = product.requester.get_username()
    key = authorization.token_key(username=username, application_name=name)
    raw = get_redis_connection("default")
    assert raw.get(key) is not None
    assert authorization.live_token(username=username, application_name=name) is not None

    def check():
        return authorization.live_token(username=username, application_name=name)

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
        "how": "redeploy.authorization.live_token vs GET of its key on the same django-redis "
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


def figure_overhead(product: Product, api: Api, cluster: Cluster, *, redeploys: int) -> dict:
    namespace, name = FIGURE1_DEPLOYMENT
    warmup = 5
    accepted_to_patch, sent_to_patch, request_ms, bare = [], [], [], []
    watcher = ThreadPoolExecutor(max_workers=1)
    for i in range(warmup + redeploys):
        idle_since = time.monotonic()
        product.approve([name])
        if i % 2:
            bare_seconds = cluster.bare_patch(namespace, name)
            cluster.patches(at_least=1)
        # The PATCH is awaited by a request sent beforehand: while the redeploy runs, this
        # process waits on a socket instead of loading the two cores with requests of its own
        # (the bare PATCH is timed with nothing else going on either).
        arrival = watcher.submit(cluster.patches, at_least=1)
        time.sleep(0.02)
        sent = time.monotonic()
        operation_id = api.redeploy(application=name, namespace=namespace, deployment=name)
        accepted = time.monotonic()
        ((arrived, path, restarted_at),) = arrival.result()
        # How long the worker sat idle before this task: it idles as long before the next one,
        # rather than being warmed by the follow-up of this one.
        idle_seconds = min(accepted - idle_since, 1.0)
        assert path.endswith(f"/{namespace}/deployments/{name}"), path
        assert not restarted_at.startswith("bare-"), restarted_at
        wait_finished([operation_id])
        if not i % 2:
            bare_seconds = cluster.bare_patch(namespace, name)
            cluster.patches(at_least=1)
        time.sleep(idle_seconds)
        if i >= warmup:
            accepted_to_patch.append((arrived - accepted) * 1000)
            sent_to_patch.append((arrived - sent) * 1000)
            request_ms.append((accepted - sent) * 1000)
            bare.append(bare_seconds * 1000)
        if i and i % 50 == 0:
            log(f"  figure 1: {i} redeploys")
    product_ms, bare_ms = summary(accepted_to_patch), summary(bare)
    from_sent, request = summary(sent_to_patch), summary(request_ms)
    return {
        "product_ms": product_ms,
        "baseline_ms": bare_ms,
        "ratio_median": product_ms["median"] / bare_ms["median"],
        "ratio_p95": product_ms["p95"] / bare_ms["p95"],
        "request_sent_to_patch_ms": from_sent,
        "request_sent_to_patch_ratio_median": from_sent["median"] / bare_ms["median"],
        "api_request_ms": request,
        "api_request_ratio_median": request["median"] / bare_ms["median"],
        "how": "202 received by the client -> PATCH recorded by the API server (one clock, "
        "CLOCK_MONOTONIC); by the 202 the request has taken the authorization and written the "
        "targets (redeploy.services._enqueue), the worker checks and restarts; one redeploy at "
        "a time, each after its own approved ticket, the worker idle; baseline: warm "
        "official-client PATCH of the same Deployment, call to answer, alternating with the "
        "redeploys",
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


# -- report ------------------------------------------------------------------------------------


def verdicts(figures: dict) -> dict:
    out = {}
    for name, figure in figures.items():
        target, check = TARGETS[name]
        figure["target"] = target
        figure["pass"] = None if check is None else bool(check(figure))
        out[name] = figure["pass"]
    return out


def rows(figures: dict) -> list[tuple]:
    """(figure, product, baseline, ratio, target, ok) per line of the table."""
    out = []

    def add(name, product, baseline, ratio, figure=None):
        verdict = {True: "yes", False: "NO", None: ""}[figure["pass"]] if figure else ""
        out.append((name, product, baseline, ratio, figure["target"] if figure else "", verdict))

    if f := figures.get("redeploy_overhead"):
        product, bare, sent = f["product_ms"], f["baseline_ms"], f["request_sent_to_patch_ms"]
        add(
            "1 redeploy overhead, median",
            f"{product['median']:.2f} ms",
            f"{bare['median']:.2f} ms",
            f"{f['ratio_median']:.2f}",
            f,
        )
        add("  p95", f"{product['p95']:.2f} ms", f"{bare['p95']:.2f} ms", f"{f['ratio_p95']:.2f}")
        request = f["api_request_ms"]
        add(
            "  the request itself, median",
            f"{request['median']:.2f} ms",
            f"{bare['median']:.2f} ms",
            f"{f['api_request_ratio_median']:.2f}",
        )
        add(
            "  from the request sent, median",
            f"{sent['median']:.2f} ms",
            f"{bare['median']:.2f} ms",
            f"{f['request_sent_to_patch_ratio_median']:.2f}",
        )
    if f := figures.get("authorization_check"):
        add(
            "2 authorization check, median",
            f"{f['product_ms']['median'] * 1000:.0f} us",
            f"{f['baseline_ms']['median'] * 1000:.0f} us",
            f"{f['ratio_median']:.2f}",
            f,
        )
        add("  Redis round trips per check", f"{f['round_trips_per_check']:g}", "1", "")
    if f := figures.get("audit_list_page"):
        (small, large), p95 = f["sizes"], f["unfiltered_p95_ms"]
        add(
            f"3 audit page p95, unfiltered, {large:,} events",
            f"{p95[1]:.1f} ms",
            f"{p95[0]:.1f} ms ({small:,})",
            f"{p95[1] / p95[0]:.2f}",
            f,
        )
        worst = f["scenarios"][f["worst_scenario"]]
        add(
            f"  worst of {len(f['scenarios'])}: {f['worst_scenario']}",
            f"{worst[f'p95_ms_{large}']:.1f} ms",
            f"{worst[f'p95_ms_{small}']:.1f} ms",
            f"{f['worst_ratio_p95']:.2f}",
        )
        queries = "/".join(str(q) for q in f["queries_per_page"])
        add("  SQL queries per page", queries, "", "")
    if f := figures.get("throughput"):
        add(
            f"4 throughput, {f['redeploys']} restarts applied",
            f"{f['product_restart_applied_s']:.2f} s",
            f"{f['baseline_s']:.2f} s",
            f"{f['ratio']:.2f}",
            f,
        )
        add(
            "  until every rollout finished",
            f"{f['product_finished_s']:.2f} s",
            f"{f['baseline_s']:.2f} s",
            f"{f['ratio_finished']:.2f}",
        )
        each = f["one_request_each"]
        add(
            "  one request per redeploy, applied",
            f"{each['applied_s']:.2f} s",
            f"{f['baseline_s']:.2f} s",
            f"{each['ratio']:.2f}",
        )
    if f := figures.get("peak_memory"):
        for role in ("web", "worker"):
            add(
                f"5 peak RSS, {role}",
                f"{f[role]['peak_rss_mib']:.0f} MiB",
                f"{f[role]['ready_rss_mib']:.0f} MiB when ready",
                f"{f[role]['ratio_to_ready']:.2f}",
                f,
            )
    return out


def table(figures: dict) -> str:
    lines = [("figure", "product", "baseline", "ratio", "target", "ok"), *rows(figures)]
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(line.rstrip() for line in text)


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="cratos-bench-"))
    log(f"logs in {logs}")
    broker_url = BROKERS[args.broker]
    recreate_database(DATABASE_URL)
    setup_django()
    from django.core.management import call_command
    from django_redis import get_redis_connection

    call_command("migrate", verbosity=0)
    get_redis_connection("default").flushdb()
    facts = machine_facts(args.broker)
    figures: dict = {}
    with ExitStack() as stack:
        sim, sim_url = start_sim(stack, logs, apps=args.apps)
        product = Product(sim_url, apps=args.apps)
        env = service_env(broker_url)
        web, web_url = start_web(stack, logs, env)
        worker = start_worker(stack, logs, env, pool=args.pool, concurrency=args.concurrency)
        (web_pid,) = child_pids(web.pid)
        ready = {"web": memory_kib(web_pid), "worker": memory_kib(worker.pid)}
        log(f"services ready (web worker pid {web_pid}, celery pid {worker.pid})")
        api, cluster = Api(web_url, product.api_token), Cluster(sim_url)

        log("figure 2: authorization check")
        figures["authorization_check"] = figure_authorization(product, checks=args.auth_checks)
        log(f"figure 1: redeploy overhead, {args.redeploys} redeploys")
        figures["redeploy_overhead"] = figure_overhead(
            product, api, cluster, redeploys=args.redeploys
        )
        log(f"figure 4: throughput, {args.apps} applications")
        figures["throughput"] = figure_throughput(
            product, api, cluster, apps=args.apps, rounds_count=args.throughput_rounds
        )
        if child_pids(web.pid) != [web_pid]:
            raise RuntimeError("gunicorn replaced its worker during the run; memory not comparable")
        figures["peak_memory"] = figure_memory(web_pid, worker.pid, ready)
        for process in (sim, web, worker):
            process.check_alive()
    if not args.skip_audit:
        log("figure 3: audit list page (fills 1,000,000 events)")
        figures["audit_list_page"] = figure_audit(requests=args.audit_requests, logs=logs)
    order = [
        "redeploy_overhead",
        "authorization_check",
        "audit_list_page",
        "throughput",
        "peak_memory",
    ]
    figures = {name: figures[name] for name in order if name in figures}
    passed = verdicts(figures)
    facts["load_average_at_end"] = _load_average()
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["scripts/bench", *sys.argv[1:]]),
        "machine": facts,
        "configuration": {
            "broker": broker_url,
            "worker": f"celery worker --pool={args.pool} --concurrency={args.concurrency}",
            "web": "gunicorn -c gunicorn.conf.py, WEB_CONCURRENCY=1",
            "authorizations": "minted by the real ticket flow (create, submit, approve)",
            "rollout_poll_seconds": float(ROLLOUT_POLL_SECONDS),
            "database": f"PostgreSQL {database_name(DATABASE_URL)}",
            "redis": REDIS_URL,
        },
        "figures": figures,
        "all_pass": all(v for v in passed.values() if v is not None),
        "duration_s": round(time.monotonic() - started, 1),
    }
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(figures))
    print()
    log(f"results in {args.json} ({results['duration_s']} s)")
    if not args.keep:
        from django.db import connections

        connections.close_all()
        recreate_database(DATABASE_URL, drop_only=True)
        for path in logs.iterdir():
            path.unlink()
        logs.rmdir()
    return 0 if results["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
