"""Issue 15 §1: the pages people open all day, at scale.

Creates (drops and recreates) its own PostgreSQL database, migrates it and fills it:
- the audit log twice, each size in a schema of its own (as bench/audit_bench.py does, and
  with its rows), 10,000 and 10,000,000 events: one INSERT ... SELECT FROM generate_series
  into a table without indexes, then the indexes built once (much faster than maintaining
  nine indexes row by row);
- 10,000 open tickets (IN_APPROVAL, one entry each) of one requester, awaiting the approvers;
- 5,000 applications, each bound to a Deployment, a fifth of them owned by a team.

Then each page is requested in-process (Django's test client), every kind of request taking
turns so load from elsewhere weighs on all alike, and p50s compared:
- a full page (the audit log and the approvals queue: 50 rows; the ticket list 20, the
  applications list 25: their page sizes) vs the same page with 0 rows, target <= 1.5;
- the 0-row page vs the login page, target <= 2;
- the audit page at 10,000,000 events vs 10,000, for each of audit_bench's scenarios: p95
  ratio <= 1.3 and the same number of queries.
Last, 5,000 more applications (10,000) and bench/memory_bench.py: the peak memory of gunicorn
and of a celery worker on this database, after paging those pages and the periodic sweeps.

    .venv/bin/python bench/pages_bench.py [--requests 60] [--events 10000 10000000]
        [--database-url postgres://postgres@127.0.0.1:5432/cratos_bench_pages] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import audit_bench, memory_bench
from bench.audit_bench import drop_database, schema, setup_django, use_size

TARGET_ROWS = 1.5
TARGET_EMPTY = 2.0
TARGET_SCALE = 1.3
TICKETS = 10_000
APPLICATIONS = 5_000
MEMORY_APPLICATIONS = 10_000
WARMUP = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cratos_bench"
        )
        + "_pages",
    )
    parser.add_argument("--events", type=int, nargs=2, default=[10_000, 10_000_000])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


# -- filling -------------------------------------------------------------------------------------


def fill_audit(size: int) -> float:
    """One size's audit table: rows first, then the product's indexes, then VACUUM ANALYZE."""
    from django.db import connection
    from django.utils import timezone

    table = audit_bench.page().table
    started = time.perf_counter()
    use_size(size)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema(size)}")
        cursor.execute(
            f"CREATE TABLE {schema(size)}.{table} "
            f"(LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES)"
        )
        cursor.execute(
            audit_bench.FILL_SQL.format(table=table),
            {
                "end": timezone.now(),
                "n": size,
                "spacing": audit_bench.SPACING_SECONDS,
                "actions": audit_bench.ACTIONS,
                "action_count": len(audit_bench.ACTIONS),
            },
        )
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s",
            [table],
        )
        definitions = [row[0] for row in cursor.fetchall()]
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for definition in definitions:
            cursor.execute(definition.replace(" ON public.", f" ON {schema(size)}."))
    raw = connection.connection
    previous, raw.autocommit = raw.autocommit, True
    try:
        raw.execute(f"VACUUM ANALYZE {table}")
    finally:
        raw.autocommit = previous
    return time.perf_counter() - started


def add_applications(numbers: range) -> list:
    """Applications app-NNNNN, each bound to a Deployment, every fifth owned by a team."""
    from django.utils import timezone

    from cratos.teams.models import Team
    from redeploy.models import Application, DeploymentBinding, KubernetesCluster

    cluster, _ = KubernetesCluster.objects.get_or_create(
        name="bench", defaults={"server": "https://127.0.0.1:1", "token": "bench-token"}
    )
    team, _ = Team.objects.get_or_create(name="bench-team")
    tags = [{"key": "team", "value": "bench"}, {"key": "tier", "value": "web"}]
    applications = Application.objects.bulk_create(
        Application(name=f"app-{n:05d}", description=f"Application {n}", tags=tags) for n in numbers
    )
    team.applications.add(*applications[::5])
    DeploymentBinding.objects.bulk_create(
        DeploymentBinding(
            application=application,
            cluster=cluster,
            namespace=f"ns-{n % 10}",
            deployment_name=application.name,
            ready_replicas=2,
            desired_replicas=2 + n % 2,
            seen_at=timezone.now(),
        )
        for n, application in zip(numbers, applications, strict=True)
    )
    return applications


def fill_people_and_work():
    """Users, 10,000 open tickets and 5,000 applications; returns the users by role."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.utils import timezone

    from tickets import services
    from tickets.models import Ticket, TicketEntry, WorkOrder

    users = get_user_model().objects
    approvers = Group.objects.get(name="Approvers")
    people = {
        name: users.create_user(f"bench-{name}", password=memory_bench.PASSWORD)
        for name in ("requester", "approver", "newcomer", "reviewer")
    }
    people["reviewer"].groups.add(audit_bench.page().reviewer_group())
    people["approver"].groups.add(approvers)

    applications = add_applications(range(APPLICATIONS))

    # One ticket through the services, as a requester files it; the rest are its copies.
    model = services.create_ticket(
        applicant=people["requester"],
        work_order=WorkOrder.objects.get(key="APPLICATION_REDEPLOY"),
        application_names=[applications[1].name],
        reason="Pick up the new configuration",
    )
    services.submit_ticket(ticket=model, actor=people["requester"])
    model.refresh_from_db()
    entry = model.entries.get()
    day = f"{timezone.now():%Y%m%d}"
    tickets = Ticket.objects.bulk_create(
        Ticket(
            ticket_no=f"{day}9{n:05d}",
            work_order_id=model.work_order_id,
            applicant_id=model.applicant_id,
            reason=model.reason,
            state=model.state,
            current_node_id=model.current_node_id,
            submitted_at=model.submitted_at,
        )
        for n in range(TICKETS - 1)
    )
    TicketEntry.objects.bulk_create(
        TicketEntry(
            ticket=ticket,
            business_type=entry.business_type,
            name=applications[n % APPLICATIONS].name,
            content=entry.content,
            state=entry.state,
        )
        for n, ticket in enumerate(tickets)
    )
    # The planner's statistics, as autovacuum keeps them on a live server. Without them (the
    # test server runs with autovacuum off) it guesses 30 tickets for 10,000 and sorts the whole
    # approvals queue: its query took 100 ms, and 1 ms once the table was analyzed.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return people


# -- measuring -----------------------------------------------------------------------------------


def page_requests(people: dict) -> dict[str, dict]:
    """Per page: its full and its 0-row request, as (client, path, query)."""
    from django.test import Client
    from django.urls import reverse

    clients = {}
    for name, user in people.items():
        clients[name] = Client()
        clients[name].force_login(user)
    return {
        "audit": {
            "rows": (clients["reviewer"], reverse("audit:events"), {}),
            "empty": (clients["reviewer"], reverse("audit:events"), {"actor": "nobody"}),
        },
        "tickets": {
            "rows": (clients["requester"], reverse("tickets:list"), {}),
            "empty": (clients["newcomer"], reverse("tickets:list"), {}),
        },
        "approvals": {
            "rows": (clients["approver"], reverse("tickets:approvals"), {}),
            # Nothing waits for someone outside the approvers: the queue's empty state.
            "empty": (clients["newcomer"], reverse("tickets:approvals"), {}),
        },
        "applications": {
            "rows": (clients["newcomer"], reverse("redeploy:applications"), {}),
            "empty": (clients["newcomer"], reverse("redeploy:applications"), {"q": "no-such"}),
        },
    }


def measure_pages(people: dict, *, requests: int) -> dict:
    """p50 of every page's full and 0-row request and of the login page, taking turns."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    anonymous, login = Client(), reverse("login")
    calls = {"login": lambda: anonymous.get(login)}
    queries = {}
    for page, kinds in page_requests(people).items():
        for kind, (client, path, query) in kinds.items():
            calls[f"{page}.{kind}"] = lambda c=client, p=path, q=query: c.get(p, q)
            with CaptureQueriesContext(connection) as captured:
                assert calls[f"{page}.{kind}"]().status_code == 200, (page, kind)
            queries[f"{page}.{kind}"] = len(captured)
    timings = {name: [] for name in calls}
    for round_no in range(requests + WARMUP):
        for name, call in calls.items():
            started = time.perf_counter()
            response = call()
            if round_no >= WARMUP:
                timings[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (name, response.status_code)
    p50 = {name: statistics.median(values) for name, values in timings.items()}
    figures = {}
    for page in page_requests(people):
        rows, empty = p50[f"{page}.rows"], p50[f"{page}.empty"]
        figures[page] = {
            "p50_ms": {"rows": rows, "empty": empty, "login": p50["login"]},
            "queries": {"rows": queries[f"{page}.rows"], "empty": queries[f"{page}.empty"]},
            "ratio_rows": rows / empty,
            "ratio_empty_to_login": empty / p50["login"],
        }
    return figures


def measure_audit_scale(client, url: str, sizes: list[int], *, requests: int) -> dict:
    """audit_bench's scenarios on both sizes, requests alternating between them."""
    params = {size: audit_bench.scenarios(size) for size in sizes}
    small, large = sizes
    scenarios = {}
    for name in params[small]:
        figures = audit_bench.measure(
            client,
            url,
            {size: params[size][name] for size in sizes},
            requests=requests,
            warmup=WARMUP,
        )
        a, b = figures[small], figures[large]
        scenarios[name] = {
            "p95_ms": [a["p95_ms"], b["p95_ms"]],
            "p50_ms": [a["p50_ms"], b["p50_ms"]],
            "queries": [a["queries"], b["queries"]],
            "rows": [a["rows"], b["rows"]],
            "ratio_p95": b["p95_ms"] / a["p95_ms"],
        }
    worst = max(scenarios, key=lambda n: scenarios[n]["ratio_p95"])
    return {
        "sizes": sizes,
        "scenarios": scenarios,
        "worst_scenario": worst,
        "worst_ratio_p95": scenarios[worst]["ratio_p95"],
        "same_query_count": all(len(set(s["queries"])) == 1 for s in scenarios.values()),
    }


def verdict(figures: dict) -> bool:
    pages = figures["pages"].values()
    scale = figures["audit_scale"]
    return (
        all(p["ratio_rows"] <= TARGET_ROWS for p in pages)
        and all(p["ratio_empty_to_login"] <= TARGET_EMPTY for p in pages)
        and scale["worst_ratio_p95"] <= TARGET_SCALE
        and scale["same_query_count"]
        and figures["peak_memory"]["within_targets"]
    )


def report(figures: dict) -> str:
    lines = [f"{'page':<13} {'full':>8} {'0 rows':>8} {'login':>7} {'ratio':>6} {'ratio':>6}"]
    lines.append(f"{'':<13} {'p50 ms':>8} {'p50 ms':>8} {'p50 ms':>7} {'<=1.5':>6} {'<=2':>6}")
    for page, f in figures["pages"].items():
        p50 = f["p50_ms"]
        lines.append(
            f"{page:<13} {p50['rows']:>8.1f} {p50['empty']:>8.1f} {p50['login']:>7.1f} "
            f"{f['ratio_rows']:>6.2f} {f['ratio_empty_to_login']:>6.2f}"
        )
    scale = figures["audit_scale"]
    small, large = scale["sizes"]
    lines.append("")
    lines.append(f"audit page, p95 at {large:,} vs {small:,} events (<= {TARGET_SCALE}):")
    for name, s in scale["scenarios"].items():
        lines.append(
            f"  {name:<22} {s['p95_ms'][1]:>7.1f} / {s['p95_ms'][0]:>7.1f} ms "
            f"{s['ratio_p95']:>5.2f}  queries {s['queries'][0]}/{s['queries'][1]}"
        )
    memory = figures["peak_memory"]
    lines.append("")
    lines.append(f"peak memory (VmHWM) after {memory['requests']} page requests and the sweeps:")
    for role in ("web", "worker"):
        m = memory[role]
        lines.append(
            f"  {role:<7} {m['peak_rss_mib']:6.1f} MiB (ready: {m['ready_rss_mib']:6.1f} MiB) "
            f"< {memory_bench.TARGET_MIB}: {'yes' if m['pass'] else 'NO'}"
        )
    return "\n".join(lines)


def figure(*, requests: int, logs: Path, database_url: str) -> dict:
    """bench/run.py's figure 10: this script in a process of its own, on its own database."""
    output = logs / "pages.json"
    command = [sys.executable, __file__, "--requests", str(requests), "--json", str(output)]
    subprocess.run([*command, "--database-url", database_url], check=False)
    return json.loads(output.read_text())


def main() -> int:
    args = parse_args()
    drop_database(args.database_url, recreate=True)
    # With DEBUG off the product refuses the demo's keys (the web and worker inherit these).
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    os.environ.setdefault("FIELD_ENCRYPTION_KEY", "bench-only-field-encryption-key")
    os.environ.setdefault("CELERY_BROKER_URL", "")
    os.environ.setdefault("TASKS_IN_THREADS", "false")
    setup_django(args.database_url)

    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    people = fill_people_and_work()
    print(
        f"filled {TICKETS:,} tickets, {APPLICATIONS:,} applications in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    fills = {}
    for size in args.events:
        fills[size] = fill_audit(size)
        print(f"filled {size:>10,} events in {fills[size]:6.1f} s", flush=True)

    use_size(max(args.events))
    figures = {"pages": measure_pages(people, requests=args.requests)}
    reviewer = Client()
    reviewer.force_login(people["reviewer"])
    figures["audit_scale"] = measure_audit_scale(
        reviewer, reverse("audit:events"), args.events, requests=args.requests
    )
    figures["fill_seconds"] = {str(size): seconds for size, seconds in fills.items()}
    figures["counts"] = {"tickets": TICKETS, "applications": APPLICATIONS}
    add_applications(range(APPLICATIONS, MEMORY_APPLICATIONS))
    figures["peak_memory"] = memory_bench.run(
        database_url=args.database_url,
        search_path=f"{schema(max(args.events))},public",
        logs=Path(tempfile.mkdtemp(prefix="cratos-pages-bench-")),
    )
    figures["counts"]["applications_for_memory"] = MEMORY_APPLICATIONS
    figures["within_targets"] = verdict(figures)
    print()
    print(report(figures))
    if not args.keep:
        from django.db import connection

        connection.close()
        drop_database(args.database_url, recreate=False)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if figures["within_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
