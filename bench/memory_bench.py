"""Issue 15 §3: peak memory (VmHWM) of the web process and of a celery worker, with 10,000
applications and 10,000,000 audit events in the database.

Run by bench/pages_bench.py on its filled database: gunicorn (as deployed, one worker
process) and `celery worker --pool=solo` are started on it, their RSS read once ready (the
baseline); then people page through the audit log (20 pages, and both exports of up to
EXPORT_MAX_ROWS events), their tickets, the approvals queue and the applications list over
HTTP, and the worker runs every periodic sweep (beat's tasks) over the same tables. Each
process's VmHWM must stay under 200 MiB.
"""

import re
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote, urljoin

from bench.harness import (
    BROKERS,
    child_pids,
    memory_kib,
    service_env,
    start_web,
    start_worker,
    wait_until,
)

TARGET_MIB = 200
PASSWORD = "bench-pages-password"
BEAT_TASKS = [
    "tickets.expire_stale_tickets",
    "tickets.expire_unused_authorizations",
    "tickets.warn_expiring_authorizations",
    "redeploy.settle_stuck_operations",
]
NEXT_LINK = re.compile(r'<a href="([^"]+)" rel="next">')


def signed_in(url: str, username: str):
    import requests

    session = requests.Session()
    login = f"{url}/accounts/login/"
    session.get(login, timeout=30)
    response = session.post(
        login,
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": login},
        timeout=30,
    )
    if "sessionid" not in session.cookies:
        raise RuntimeError(f"{username} could not sign in ({response.status_code})")
    return session


def page_through(url: str) -> int:
    """What people do all day, over HTTP; returns the number of requests."""
    reviewer, requester = signed_in(url, "bench-reviewer"), signed_in(url, "bench-requester")
    approver, newcomer = signed_in(url, "bench-approver"), signed_in(url, "bench-newcomer")
    requests_made = 0

    def get(session, path: str) -> str:
        nonlocal requests_made
        response = session.get(urljoin(url, path), timeout=120)
        response.raise_for_status()
        requests_made += 1
        return response.text

    page = "/audit/"
    for _ in range(20):
        found = NEXT_LINK.search(get(reviewer, page))
        page = "/audit/" + found.group(1).replace("&amp;", "&")
    for export in ("csv", "json"):
        get(reviewer, f"/audit/?_export={export}")
    for number in range(1, 11):
        get(requester, f"/tickets/?page={number}")
        get(newcomer, f"/applications/?page={number * 37}")
    for _ in range(5):
        get(approver, "/approvals/")
    get(newcomer, "/applications/?q=app-1")
    return requests_made


def run(*, database_url: str, search_path: str, logs: Path) -> dict:
    """Both processes on `database_url`, reading the audit events from `search_path`."""
    from celery import Celery

    separator = "&" if "?" in database_url else "?"
    options = quote(f"-c search_path={search_path}", safe="")
    broker = BROKERS["redis"]
    env = {
        **service_env(broker),
        "DATABASE_URL": f"{database_url}{separator}options={options}",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    with ExitStack() as stack:
        web, url = start_web(stack, logs, env)
        worker = start_worker(stack, logs, env, pool="solo", concurrency=1)
        (web_pid,) = child_pids(web.pid)
        ready = {"web": memory_kib(web_pid), "worker": memory_kib(worker.pid)}
        started = time.monotonic()
        requests_made = page_through(url)
        sender = Celery(broker=broker)
        for name in BEAT_TASKS:
            sender.send_task(name)
        wait_until(
            lambda: len(re.findall(r" (succeeded in|raised) ", worker.output())) >= len(BEAT_TASKS),
            seconds=300,
            what="the periodic sweeps",
            process=worker,
        )
        if child_pids(web.pid) != [web_pid]:
            raise RuntimeError("gunicorn replaced its worker during the run")
        peak = {"web": memory_kib(web_pid), "worker": memory_kib(worker.pid)}
    figure = {
        role: {
            "ready_rss_mib": ready[role]["VmRSS"] / 1024,
            "peak_rss_mib": peak[role]["VmHWM"] / 1024,
            "pass": peak[role]["VmHWM"] / 1024 < TARGET_MIB,
        }
        for role in ("web", "worker")
    }
    figure["requests"] = requests_made
    figure["seconds"] = time.monotonic() - started
    figure["within_targets"] = figure["web"]["pass"] and figure["worker"]["pass"]
    return figure
