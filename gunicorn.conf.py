"""Gunicorn settings for the web process: `gunicorn cratos.wsgi` reads this file from the CWD.

Every knob comes from the environment so the same image serves any size of pod.
"""

import gc
import os

MAX_DEFAULT_WORKERS = 8


def _cores() -> int:
    # The CPUs this process may run on, which in a container can be fewer than the host's.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# WEB_CONCURRENCY is the usual name; in a pod set it to match the CPU limit, since the
# affinity mask shows every node CPU, not the pod's quota.
workers = _int("WEB_CONCURRENCY", min(2 * _cores() + 1, MAX_DEFAULT_WORKERS))
threads = _int("GUNICORN_THREADS", 1)
# A request slower than this is killed; Kubernetes calls happen in the worker, not here.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On SIGTERM, requests in flight get this long; keep terminationGracePeriodSeconds above it.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 25)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then so slow leaks never grow into an outage.
max_requests = _int("GUNICORN_MAX_REQUESTS", 1000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 100)

# Proxies whose X-Forwarded-Proto/-For gunicorn believes (comma-separated IPs, or * when only
# the ingress can reach the pods). Default: none but the pod itself.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# The heartbeat files live in memory: the image's root filesystem is read-only.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def post_worker_init(worker):
    # Once the application is loaded: its long-lived objects are left out of every garbage
    # collection (a full one over them pauses a request for tens of milliseconds).
    gc.freeze()
