"""The report: each figure's target and verdict, and the printed table."""

FIGURES = {
    1: "redeploy_vs_kubectl",
    2: "authorization_check",
    3: "audit_list_page",
    4: "throughput",
    5: "peak_memory",
    6: "rollout_following",
    7: "sync_applications",
    8: "batch_across_clusters",
    9: "users_at_once",
    10: "pages_at_scale",
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
    "batch_across_clusters": (
        "ratio <= 2, < 1 API request and broker message per rollout",
        lambda f: (
            f["ratio"] <= 2
            and f["api_requests_per_rollout"] < 1
            and f["broker_messages_per_rollout"] < 1
        ),
    ),
    "users_at_once": ("p95 <= 2 x one user's median", lambda f: f["ratio_p95"] <= 2),
    "pages_at_scale": (
        "each page p50 full <= 1.5 x 0 rows <= 2 x login; audit p95(10M) <= 1.3 x p95(10k); "
        "web and worker peak RSS < 200 MiB",
        lambda f: f["within_targets"],
    ),
}


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
    if f := figures.get("batch_across_clusters"):
        add(
            f"8 one batch of {f['redeploys']:,} over {f['clusters']} clusters, applied",
            f"{f['product_restart_applied_s']:.2f} s",
            f"{f['baseline_s']:.2f} s bare PATCHes",
            f"{f['ratio']:.2f}",
            f,
        )
        add(
            "  until every rollout was followed to SUCCEEDED",
            f"{f['product_finished_s']:.2f} s",
            "",
            "",
        )
        add(
            "  per rollout: API requests / broker messages following it",
            f"{f['api_requests_per_rollout']:.3f} / {f['broker_messages_per_rollout']:.4f}",
            "",
            "",
        )
    if f := figures.get("users_at_once"):
        add(
            f"9 {f['users']} users at once, request -> PATCH p95",
            f"{f['together_ms']['p95']:.0f} ms",
            f"{f['single_user_ms']['median']:.0f} ms one alone",
            f"{f['ratio_p95']:.2f}",
            f,
        )
        add(
            f"  the same p95 vs the CPU floor ({f['cpu_per_redeploy_alone_ms']['to_patch']:.0f} "
            f"ms of CPU per redeploy x {f['users']} / {f['usable_cores']} cores)",
            f"{f['together_ms']['p95']:.0f} ms",
            f"{f['cpu_floor_ms']:.0f} ms floor",
            f"{f['p95_over_cpu_floor']:.2f}",
            "",
        )
    if f := figures.get("pages_at_scale"):
        scale = f["audit_scale"]
        small, large = scale["sizes"]
        add(
            f"10 audit page p95, {large:,} vs {small:,} events, worst: {scale['worst_scenario']}",
            f"{scale['scenarios'][scale['worst_scenario']]['p95_ms'][1]:.1f} ms",
            f"{scale['scenarios'][scale['worst_scenario']]['p95_ms'][0]:.1f} ms",
            f"{scale['worst_ratio_p95']:.2f}",
            f,
        )
        for page, p in f["pages"].items():
            add(
                f"  {page}: p50 full page vs 0 rows (<= 1.5)",
                f"{p['p50_ms']['rows']:.1f} ms",
                f"{p['p50_ms']['empty']:.1f} ms",
                f"{p['ratio_rows']:.2f}",
            )
            add(
                f"  {page}: p50 0 rows vs the login page (<= 2)",
                f"{p['p50_ms']['empty']:.1f} ms",
                f"{p['p50_ms']['login']:.1f} ms",
                f"{p['ratio_empty_to_login']:.2f}",
            )
        for role in ("web", "worker"):
            memory = f["peak_memory"][role]
            add(
                f"  peak RSS (VmHWM) of the {role}, 10,000 applications, 10M events (< 200 MiB)",
                f"{memory['peak_rss_mib']:.0f} MiB",
                f"{memory['ready_rss_mib']:.0f} MiB when ready",
                f"{memory['peak_rss_mib'] / memory['ready_rss_mib']:.2f}",
                ok={True: "yes", False: "NO"}[memory["pass"]],
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
