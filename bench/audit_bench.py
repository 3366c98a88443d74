"""Benchmark 3: the audit list page with 10,000 and with 1,000,000 events.

Creates (drops and recreates) its own PostgreSQL database and migrates it. Each size gets its
own copy of the audit table (schema audit_<size>, same columns and indexes), filled with one
INSERT ... SELECT FROM generate_series. Then /audit/ is requested in-process with Django's test
client, alternating between the two sizes request by request (search_path picks the table),
so load from anything else on the machine weighs on both sides alike. Printed per scenario:
p50/p95 and the SQL queries per page. Target (issue 6): p95 with 1M <= 1.3 x p95 with 10k,
and the same query count.

    .venv/bin/python bench/audit_bench.py [--requests 50] [--sizes 10000 1000000]
        [--database-url postgres://postgres@127.0.0.1:5432/cratos_bench] [--json out.json]
        [--extra-indexes]

--extra-indexes also creates the indexes proposed for AuditEvent.Meta.indexes (EXTRA_INDEXES),
to measure them before they are migrated.
"""

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3
SPACING_SECONDS = 30  # one event every 30 s: 10k span 3.5 days, 1M span about a year

# {table}: the events' table (bench.adapters.audit_page().table).
EXTRA_INDEXES = [
    "CREATE INDEX ON {table} (outcome, created_at DESC, id DESC)",
    "CREATE INDEX ON {table} (namespace, created_at DESC, id DESC)",
    "CREATE INDEX ON {table} USING gin (UPPER(message) gin_trgm_ops)",
]

ACTIONS = [
    "ticket.created", "ticket.entry_added", "ticket.submitted", "ticket.approved",
    "ticket.rejected", "ticket.cancelled", "ticket.completed", "authorization.minted",
    "authorization.consumed", "authorization.restored", "authorization.expired",
    "redeploy.requested", "redeploy.started", "redeploy.succeeded", "redeploy.failed",
    "rollout.complete", "rollout.failed",
]  # fmt: skip

# Row g of n: ids and times grow together, as in a log that only ever appends.
FILL_SQL = """
INSERT INTO {table} (
    created_at, actor_username, action, outcome, ticket_no, operation_id, application_name,
    cluster_name, namespace, deployment_name, message, generation, resource_version,
    request_ip, celery_task_id
)
SELECT
    %(end)s::timestamptz - ((%(n)s - g) * %(spacing)s) * interval '1 second',
    'user' || ((hashint4(g) & 2147483647) %% 200),
    (%(actions)s::text[])[1 + (hashint4(g + 7) & 2147483647) %% %(action_count)s],
    CASE WHEN g %% 50 = 0 THEN 'INFO' WHEN g %% 13 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
    to_char(%(end)s::timestamptz, 'YYYYMMDD') || lpad((g / 8)::text, 6, '0'),
    CASE WHEN g %% 3 = 0 THEN md5(g::text)::uuid END,
    'app-' || (g * 31 %% 300),
    'cluster-' || (g %% 5),
    'ns-' || (g * 17 %% 40),
    'app-' || (g * 31 %% 300),
    CASE WHEN g %% 97 = 0
        THEN 'Operation failed err: progress deadline exceeded for app-' || (g * 31 %% 300)
        ELSE 'Restarted deployment app-' || (g * 31 %% 300) || ' in ns-' || (g * 17 %% 40)
    END,
    CASE WHEN g %% 3 = 0 THEN g END,
    CASE WHEN g %% 3 = 0 THEN (g * 11)::text ELSE '' END,
    ('10.0.' || (g %% 250) || '.' || (g %% 199))::inet,
    ''
FROM generate_series(1, %(n)s) AS g
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cratos_bench"
        ),
    )
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--extra-indexes", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


def drop_database(url: str, *, recreate: bool) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = sql.Identifier(parts.path.lstrip("/"))
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if recreate:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(name))


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cratos.settings")
    os.environ["DEBUG"] = "false"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def page():
    """Everything this script knows of the product's audit page (bench/adapters.py)."""
    from bench.adapters import audit_page

    return audit_page()


def audit_urlconf() -> str | None:
    """The project's URLs when they route the audit page; else the tests' URLs that do."""
    from django.urls import NoReverseMatch, reverse

    try:
        reverse(page().url_name)
        return None
    except NoReverseMatch:
        return page().fallback_urlconf


def schema(size: int) -> str:
    return f"audit_{size}"


def use_size(size: int) -> None:
    """Point the next connection at one size's audit table (the rest stays in public)."""
    from django.db import connection

    connection.close()
    connection.settings_dict.setdefault("OPTIONS", {})["options"] = (
        f"-c search_path={schema(size)},public"
    )


def fill(size: int, *, extra_indexes: bool) -> float:
    from django.db import connection
    from django.utils import timezone

    table = page().table
    started = time.perf_counter()
    use_size(size)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema(size)}")
        cursor.execute(f"CREATE TABLE {schema(size)}.{table} (LIKE public.{table} INCLUDING ALL)")
        if extra_indexes:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
            for statement in EXTRA_INDEXES:
                cursor.execute(statement.format(table=table))
        cursor.execute(
            FILL_SQL.format(table=table),
            {
                "end": timezone.now(),
                "n": size,
                "spacing": SPACING_SECONDS,
                "actions": ACTIONS,
                "action_count": len(ACTIONS),
            },
        )
    # A steady-state table: statistics current and the visibility map set, as autovacuum would.
    raw = connection.connection
    previous, raw.autocommit = raw.autocommit, True
    try:
        raw.execute(f"VACUUM ANALYZE {table}")
    finally:
        raw.autocommit = previous
    return time.perf_counter() - started


def scenarios(size: int) -> dict[str, dict]:
    """Query strings per scenario. Both logs end now, so a day or a name means the same."""
    from django.utils import timezone

    use_size(size)
    day = (timezone.now() - timedelta(days=2)).date().isoformat()
    # Every scenario shows the same number of rows on both sizes, so rendering weighs alike:
    # full pages for the common filters, one day's or one ticket's rows for the narrow ones.
    return {
        "unfiltered": {},
        "page after 5,000 rows": {"after": page().cursor_after(5000)},
        "cluster+outcome": {"cluster": "cluster-2", "outcome": "FAILURE"},
        "action+cluster": {"action": "redeploy.failed", "cluster": "cluster-3"},
        "namespace": {"namespace": "ns-7"},
        "one day": {"created_after": day, "created_before": day},
        "application, one day": {
            "application": "app-17",
            "created_after": day,
            "created_before": day,
        },
        "one ticket": {"ticket_no": page().newest(100).ticket_no},
        "search (1% match)": {"q": "deadline"},
        "search (no match)": {"q": "no-such-text"},
        "no match (actor)": {"actor": "nobody"},
        "sorted by actor": {"sort": "actor"},
        "sorted by -outcome": {"sort": "-outcome"},
    }


def percentile(timings: list[float], fraction: float) -> float:
    ordered = sorted(timings)
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


def measure(client, url: str, params: dict[int, dict], *, requests: int, warmup: int) -> dict:
    """One scenario on every size, requests alternating between the sizes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sizes = list(params)
    figures = {}
    for size in sizes:
        use_size(size)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url, params[size])
        assert response.status_code == 200, response.status_code
        # Read now: the next request resets the connection's query log.
        queries = [query["sql"] for query in captured.captured_queries]
        figures[size] = {
            "queries": len(queries),
            "rows": page().rows(response),
            "audit_sql": next(sql for sql in queries if page().table in sql),
        }
        for _ in range(warmup):
            client.get(url, params[size])
    timings = {size: [] for size in sizes}
    db_timings = {size: [] for size in sizes}
    for round_no in range(requests):
        for size in sizes if round_no % 2 == 0 else sizes[::-1]:
            use_size(size)
            started = time.perf_counter()
            response = client.get(url, params[size])
            timings[size].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
            db_timings[size].append(time_query(figures[size]["audit_sql"]))
    for size in sizes:
        figures[size]["p50_ms"] = statistics.median(timings[size])
        figures[size]["p95_ms"] = percentile(timings[size], 0.95)
        figures[size]["db_p50_ms"] = statistics.median(db_timings[size])
        figures[size]["db_p95_ms"] = percentile(db_timings[size], 0.95)
    return figures


def measure_rendering(client, anonymous, url: str, *, size: int, requests: int) -> dict:
    """What a page's rows cost to render: the unfiltered page (50 rows) vs the same page with
    a filter that matches nothing on an index (0 rows) vs the login page, requests taking
    turns; p50s in ms, with the ratios issue 15 sets (<= 1.5 and <= 2)."""
    from django.urls import reverse

    use_size(size)
    pages = {
        "rows_50": lambda: client.get(url),
        "rows_0": lambda: client.get(url, {"actor": "nobody"}),
        "login": lambda: anonymous.get(reverse("login")),
    }
    timings = {name: [] for name in pages}
    for round_no in range(requests + 3):
        for name, get in pages.items():
            started = time.perf_counter()
            response = get()
            if round_no >= 3:  # warm-up
                timings[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (name, response.status_code)
    p50 = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "size": size,
        "p50_ms": p50,
        "ratio_rows": p50["rows_50"] / p50["rows_0"],
        "ratio_empty_to_login": p50["rows_0"] / p50["login"],
    }


def time_query(sql: str) -> float:
    """The page's audit query alone, as the page sent it (values inlined), in ms."""
    from django.db import connection

    connection.ensure_connection()
    started = time.perf_counter()
    connection.connection.execute(sql).fetchall()
    return (time.perf_counter() - started) * 1000


def main() -> int:
    args = parse_args()
    drop_database(args.database_url, recreate=True)
    setup_django(args.database_url)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import reverse

    call_command("migrate", verbosity=0)
    reviewer = get_user_model().objects.create_user("bench-reviewer", password="unused-password")
    reviewer.groups.add(page().reviewer_group())
    for size in args.sizes:
        seconds = fill(size, extra_indexes=args.extra_indexes)
        print(f"filled {size:>9,} events in {seconds:5.1f} s", flush=True)

    params = {size: scenarios(size) for size in args.sizes}
    results: dict[int, dict] = {size: {} for size in args.sizes}
    urlconf = audit_urlconf()
    with override_settings(ROOT_URLCONF=urlconf) if urlconf else nullcontext():
        url = reverse(page().url_name)
        client = Client()
        client.force_login(reviewer)
        for name in params[args.sizes[0]]:
            figures = measure(
                client,
                url,
                {size: params[size][name] for size in args.sizes},
                requests=args.requests,
                warmup=args.warmup,
            )
            for size, figure in figures.items():
                results[size][name] = figure
        rendering = measure_rendering(
            client, Client(), url, size=max(args.sizes), requests=args.requests
        )

    small, large = args.sizes
    print()
    print(
        f"Rendering at {rendering['size']:,} events (p50, ms): 50 rows "
        f"{rendering['p50_ms']['rows_50']:.1f}, 0 rows {rendering['p50_ms']['rows_0']:.1f}, "
        f"login {rendering['p50_ms']['login']:.1f}; ratios {rendering['ratio_rows']:.2f} "
        f"(<= 1.5), {rendering['ratio_empty_to_login']:.2f} (<= 2)"
    )
    print(
        f"Audit list page, {args.requests} requests per size, alternating (ms); "
        f"target p95({large:,}) <= {TARGET_RATIO} x p95({small:,}), same queries"
    )
    header = (
        f"{'scenario':<22} {'p50 ' + str(small):>11} {'p95 ' + str(small):>11} "
        f"{'p50 ' + str(large):>13} {'p95 ' + str(large):>13} {'ratio':>6} {'queries':>8} "
        f"{'rows':>8} {'db p50':>13} ok"
    )
    print(header)
    print("-" * len(header))
    verdicts = {}
    for name in results[small]:
        a, b = results[small][name], results[large][name]
        ratio = b["p95_ms"] / a["p95_ms"]
        ok = ratio <= TARGET_RATIO and a["queries"] == b["queries"]
        verdicts[name] = {"ratio": ratio, "ok": ok}
        print(
            f"{name:<22} {a['p50_ms']:>11.1f} {a['p95_ms']:>11.1f} {b['p50_ms']:>13.1f} "
            f"{b['p95_ms']:>13.1f} {ratio:>6.2f} {a['queries']:>4} / {b['queries']:<2} "
            f"{a['rows']:>3} / {b['rows']:<2} {a['db_p50_ms']:>5.1f} / {b['db_p50_ms']:<5.1f} "
            f"{'yes' if ok else 'NO'}"
        )
    if not args.keep:
        from django.db import connection

        connection.close()
        drop_database(args.database_url, recreate=False)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "target_ratio": TARGET_RATIO,
                    "extra_indexes": args.extra_indexes,
                    "results": {str(size): figures for size, figures in results.items()},
                    "verdicts": verdicts,
                    "rendering": rendering,
                },
                indent=2,
            )
        )
    return 0 if all(verdict["ok"] for verdict in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
