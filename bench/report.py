"""Render bench/run.py's measurements as docs/BENCHMARKS.md."""

from __future__ import annotations

from bench import run as bench

NA = "not available"


def _row(name: str, stats: dict, baseline: float | None) -> str:
    ratio = f"{stats['rps'] / baseline:.2f}" if baseline else "-"
    errors = stats["status_errors"] + stats["connect_errors"] + stats["read_errors"] + stats["timeouts"]
    load = f"{stats['load_1m']:.1f}" if "load_1m" in stats else "-"
    cpu = f"{stats['server_cpu_ms']:.2f}" if "server_cpu_ms" in stats else "-"
    return (f"| {name} | {stats['rps']:,.0f} | {stats['p50_ms']:.2f} | {stats['p95_ms']:.2f} | {stats['p99_ms']:.2f} "
            f"| {errors} | {ratio} | {cpu} | {load} |")  # fmt: skip


def _baseline(results: list[dict]) -> float | None:
    base = next((r for r in results if r["scenario"].startswith("bare") and r["available"]), None)
    return base["stats"]["rps"] if base else None


def _target(label: str, measured: str, ok: bool, miss: str) -> str:
    return f"| {label} | {measured} | {'met' if ok else f'**missed** ({miss})'} |"


def _api_targets(name: str, stats: dict, baseline: float | None) -> list[str]:
    rps, p95 = stats["rps"], stats["p95_ms"]
    ratio = rps / baseline if baseline else 0.0
    short = 1 - rps / bench.TARGET_API_RPS
    return [
        _target(f"{name}: ≥ {bench.TARGET_API_RPS} req/s", f"{rps:,.0f} req/s", rps >= bench.TARGET_API_RPS,
                f"{short:.0%} short"),
        _target(f"{name}: p95 < {bench.TARGET_API_P95_MS} ms", f"{p95:.1f} ms", p95 < bench.TARGET_API_P95_MS,
                f"{p95 - bench.TARGET_API_P95_MS:.1f} ms over"),
        _target(f"{name}: ≥ {bench.TARGET_API_RATIO:.0%} of bare Django", f"{ratio:.2f}",
                ratio >= bench.TARGET_API_RATIO, f"{bench.TARGET_API_RATIO - ratio:.2f} below"),
    ]  # fmt: skip


def targets(report: dict) -> list[str]:
    results = {r["scenario"]: r for r in report["results"]}
    baseline = _baseline(report["results"])
    lines = ["| target | measured | verdict |", "| --- | --- | --- |"]
    for scenario in bench.SCENARIOS:
        result = results.get(scenario.name)
        if not scenario.is_api or result is None:
            continue
        if result["available"]:
            lines += _api_targets(scenario.name, result["stats"], baseline)
        else:
            lines.append(f"| {scenario.name}: API targets | {NA} | not measured |")
    live = results.get("/health/live")
    if live and live["available"]:
        p95 = live["stats"]["p95_ms"]
        limit = bench.TARGET_LIVE_P95_MS
        lines.append(
            _target(f"/health/live p95 < {limit} ms", f"{p95:.2f} ms", p95 < limit, f"{p95 - limit:.2f} ms over")
        )
    cold, limit = report["cold_start_s"], bench.TARGET_COLD_START_S
    lines.append(
        _target(f"cold start to ready < {limit} s", f"{cold:.2f} s", cold < limit, f"{cold - limit:.2f} s over")
    )
    worst, limit = max(report["rss"]["workers_mib"] or [0]), bench.TARGET_RSS_MIB
    lines.append(_target(f"worker RSS < {limit} MB", f"{worst:.0f} MiB (largest worker, after load)", worst < limit,
                         f"{worst - limit:.0f} MiB over"))  # fmt: skip
    return lines


def worker_classes(report: dict) -> list[str]:
    rows = report["worker_classes"]
    header = "| worker class | scenario | req/s | p50 ms | p95 ms | p99 ms | errors | ratio to bare | server CPU ms/req"
    header += " | load |"
    lines = [header, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    verdict = []
    for worker_class in ("sync", "gthread"):
        mine = [r for r in rows if r["worker_class"] == worker_class]
        base = _baseline(mine)
        threads = mine[0]["threads"] if mine else 1
        label = worker_class if worker_class == "sync" else f"gthread ({threads} threads)"
        for row in mine:
            if row["available"]:
                lines.append(_row(f"{label} | {row['scenario']}", row["stats"], base))
            else:
                lines.append(f"| {label} | {row['scenario']} | {NA}: {row['note']} | | | | | |")
    api = {r["worker_class"]: r for r in rows if "/api/v1/me/" in r["scenario"] and r["available"]}
    if len(api) == 2:
        faster = max(api, key=lambda k: api[k]["stats"]["rps"])
        slower = "gthread" if faster == "sync" else "sync"
        gain = api[faster]["stats"]["rps"] / api[slower]["stats"]["rps"] - 1
        verdict.append(f"\nFaster for the authenticated API: **{faster}** (+{gain:.0%} req/s over {slower}).")
    else:
        verdict.append("\nThe authenticated API was not available, so the worker classes were compared on the "
                       "bare view only.")  # fmt: skip
    return lines + verdict


def audit_section(audit: dict) -> list[str]:
    if not audit["available"]:
        return [f"{NA}: {audit['note']}."]
    out = []
    helper = audit.get("helper")
    if helper and "export_csv" in helper:
        csv, load, verify = helper["export_csv"], helper.get("load", {}), helper.get("verify", {})
        out += [
            "bench/bench_audit.py (the audit helper's benchmark, run by `make bench`):",
            "",
            f"- load: {load.get('rows', 0):,} events with a valid chain in {load.get('seconds', 0)} s (COPY); "
            f"`audit_verify` over them: {verify.get('seconds', '-')} s ({'ok' if verify.get('ok') else 'BROKEN'}).",
            f"- CSV export through the API (`/api/v1/audit-events/export/?format=csv`): {csv['rows']:,} rows, "
            f"{csv['bytes'] / 1e6:,.0f} MB in {csv['seconds']} s ({csv['rows_per_s']:,} rows/s), first byte after "
            f"{csv['first_byte_seconds']} s; peak RSS growth {csv['rss_peak_growth_mb']} MB over a "
            f"{csv['rss_baseline_mb']} MB process.",
        ]
        writes = helper.get("writes", {})
        if writes:
            out.append("- `audit.record()` throughput: " + ", ".join(f"{k} {v}" for k, v in writes.items()) + ".")
        out.append("")
    elif helper:
        out += [f"bench/bench_audit.py failed: {helper.get('error', '')}", ""]
    if audit.get("rows"):
        out += ["`manage.py audit_export` of the whole trail, per format (bench/audit_export_bench.py; "
                "peak RSS of the exporting process from wait4):", "",
                "| events | format | seconds | events/s | peak RSS MiB | bytes |",
                "| ---: | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for row in audit["rows"]:
            out.append(f"| {row['events']:,} | {row['format']} | {row['seconds']:.1f} | "
                       f"{row['events'] / max(row['seconds'], 1e-9):,.0f} | {row['peak_rss_mib']:.0f} | "
                       f"{row['bytes']:,} |")  # fmt: skip
    if audit.get("note"):
        out.append(audit["note"])
    return out


def capacity(report: dict) -> list[str]:
    """What each scenario could reach with the cores to itself: cores x 1000 / server CPU ms per request."""
    cores = report["machine"]["cpus"]
    lines = [
        f"With the {cores} cores to the server alone, a scenario tops out near {cores} x 1000 / (server CPU ms/req) "
        "requests a second (the load generator's own CPU comes on top on a shared machine). This is the figure to "
        "compare with the targets when the run shared the machine:",
        "",
        "| scenario | server CPU ms/req | ceiling req/s |",
        "| --- | ---: | ---: |",
    ]
    rows = [(r["scenario"], r["stats"]) for r in report["results"] if r["available"]]
    for r in report["dispatch"].get("rows", []):
        if "server_cpu_ms" in r:
            rows.append((f"claim + complete, {r['agents']} agents, {r.get('batch', 1)} per claim (per task)", r))
    for name, stats in rows:
        cpu = stats.get("server_cpu_ms")
        if cpu:
            lines.append(f"| {name} | {cpu:.2f} | {cores * 1000 / cpu:,.0f} |")
    return lines


SECTION_START, SECTION_END = "<!-- dispatch: bench/run.py -->", "<!-- /dispatch -->"


def dispatch_section(report: dict) -> list[str]:
    """The claim-and-complete loops, as a fraction of the bare view and of the SQL floor of the same run."""
    baseline = _baseline(report["results"])
    dispatch = report["dispatch"]
    out = [SECTION_START, "### Claim-and-complete loop", ""]
    if not dispatch["available"]:
        return [*out, f"{NA}: {dispatch['note']}.", SECTION_END]
    floor = dispatch.get("sql_floor") or {}
    floor_rate = floor.get("claims_per_s")
    load = report["machine"]["load_at_start"]
    out += [
        f"Measured {report['started']}, load average at the start {' / '.join(f'{x:.2f}' for x in load)}; "
        f"bare view {baseline or 0:,.0f} req/s in the same run"
        + (f"; SQL floor {floor_rate:,.0f} claims/s ({floor['clients']} psycopg clients, bench/sql_floor.py, "
           f"load {floor['load_1m']:.1f})." if floor_rate else f"; SQL floor not measured ({floor.get('error', '')}).")
        + " A batched row claims up to 10 tasks (`max_tasks`) and completes them with one `POST agent/complete/`;"
        " its latencies are per cycle (claim + completion of the whole batch). CPU columns are per task.",
        "",
        "| agents | per claim | tasks/s | p50 ms | p95 ms | p99 ms | errors | of bare | of SQL floor"
        " | server CPU ms | PostgreSQL CPU ms | load |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    for row in dispatch["rows"]:
        batch = row.get("batch", 1)
        if "error" in row:
            out.append(f"| {row['agents']} | {batch} | failed: {row['error'][:200]} | | | | | | | | | |")
            continue
        errors = row["status_errors"] + row["connect_errors"] + row["read_errors"] + row["timeouts"]
        of_bare = f"{row['rps'] / baseline:.3f}" if baseline else "-"
        of_floor = f"{row['rps'] / floor_rate:.3f}" if floor_rate else "-"
        pg = f"{row['pg_cpu_ms']:.2f}" if "pg_cpu_ms" in row else "-"
        out.append(f"| {row['agents']} | {batch} | {row['rps']:,.0f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} "
                   f"| {row['p99_ms']:.1f} | {errors} | {of_bare} | {of_floor} | {row['server_cpu_ms']:.2f} | {pg} "
                   f"| {row['load_1m']:.1f} |")  # fmt: skip
    return [*out, SECTION_END]


def replace_section(text: str, section: list[str]) -> str:
    """``text`` with the section ``section`` opens (its first and last lines are its markers) replaced by
    it (appended when it has none): the dispatch section, the claim-wait section."""
    body = "\n".join(section)
    start, end = section[0], section[-1]
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + body + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + body + "\n"


HAND_START, HAND_END = "<!-- hand-written: kept by bench/run.py -->", "<!-- /hand-written -->"


def keep_hand_written(old: str, new: str) -> str:
    """``new`` (a freshly rendered report) followed by the hand-written sections of ``old``, each
    between ``HAND_START`` and ``HAND_END``: comparisons with other commits and runs of other scripts
    (bench_instances.py) that one run of ``make bench`` cannot regenerate."""
    kept = []
    rest = old
    while HAND_START in rest:
        block, _, after = rest.split(HAND_START, 1)[1].partition(HAND_END)
        kept.append(HAND_START + block + HAND_END)
        rest = after
    if not kept:
        return new
    return new.rstrip("\n") + "\n\n" + "\n\n".join(kept) + "\n"


CLAIM_WAIT_START, CLAIM_WAIT_END = "<!-- claim_wait: bench/bench_claim_wait.py -->", "<!-- /claim_wait -->"


def claim_wait_section(result: dict, measured: str, load: list[float]) -> list[str]:
    """Claims that wait for work (bench/bench_claim_wait.py): latency and the idle fleet's statements."""
    out = [CLAIM_WAIT_START, "## Claims that wait for work (bench/bench_claim_wait.py)", ""]
    if not result.get("available"):
        return [*out, f"{NA}: {result.get('note') or result.get('error', '')}.", CLAIM_WAIT_END]
    p50, p99, per_agent = result["p50_ms"], result["p99_ms"], result["statements_per_agent_per_second"]
    out += [
        f"Measured {measured}, load average at the start {' / '.join(f'{x:.2f}' for x in load)}. "
        f"{result['agents']} agents each hold a claim with `wait_seconds={result['wait_seconds']}` on one uvicorn "
        "process (asking again as soon as one answers); gunicorn (2 sync workers) takes the submissions. A private "
        f"PostgreSQL cluster, fsync and synchronous_commit on; statements counted with {result['counted_with']}.",
        "",
        "| measure | value | target |",
        "| --- | ---: | --- |",
        f"| submit-to-claim p50 (from before the submission's POST) | {p50:.1f} ms | < 25 ms: "
        f"{'met' if p50 < 25 else 'missed'} |",
        f"| submit-to-claim p95 | {result['p95_ms']:.1f} ms | |",
        f"| submit-to-claim p99 | {p99:.1f} ms | < 100 ms: {'met' if p99 < 100 else 'missed'} |",
        f"| from the submission's answer (its commit) to the claim's, p50 / p99 | {result['after_commit_p50_ms']:.1f}"
        f" / {result['after_commit_p99_ms']:.1f} ms | |",
        f"| the floor: one plain claim of a pending task (no wait), p50 / p99 | {result['plain_claim_p50_ms']:.1f}"
        f" / {result['plain_claim_p99_ms']:.1f} ms | |",
        f"| tasks submitted / never claimed | {result['tasks']} / {result['missing']} | 0 missed |",
        f"| idle fleet: SQL statements per agent per second ({result['idle_statements']} in "
        f"{result['idle_seconds']} s) | {per_agent:.3f} | < 1: {'met' if per_agent < 1 else 'missed'} |",
        f"| idle fleet: ASGI process CPU | {result['idle_asgi_cpu_ms_per_second']:.1f} ms/s | |",
    ]  # fmt: skip
    return [*out, CLAIM_WAIT_END]


def render(report: dict) -> str:
    m = report["machine"]
    args = report["args"]
    baseline = _baseline(report["results"])
    out = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` (bench/run.py) on {report['started']}. Regenerate with `make bench`;",
        "the raw numbers of the last run are in `bench/results/latest.json` (not committed).",
        "",
        "## Machine and versions",
        "",
        f"- {m['cpus']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}",
        f"- Python {m['python']}, Django {m['django']}, gunicorn {m['gunicorn']}, psycopg {m['psycopg']}",
        f"- PostgreSQL {m['postgresql']}, Redis {m['redis']}, wrk {m['wrk']}",
        f"- Load average when the run started: {' / '.join(f'{x:.2f}' for x in m['load_at_start'])} (1/5/15 min). "
        "Anything above ~0.3 means other work shared the cores and the figures below are pessimistic; "
        "each scenario's 1-minute load at its end is in the last column.",
        "",
        "## Method",
        "",
        f"- gunicorn with production settings (`DEBUG=false`, generated `SECRET_KEY`, PostgreSQL "
        f"`{bench.DB_NAME}`, Redis db 6, `LOG_LEVEL=WARNING`, tracing off), "
        f"{args['workers']} sync workers, `config/gunicorn.conf.py` when present, on 127.0.0.1.",
        f"- wrk on the same machine (the load generator shares the {m['cpus']} cores): {args['threads']} threads, "
        f"{args['connections']} connections, a 2 s warm-up then {args['duration']} s per scenario. Percentiles come "
        "from wrk's own latency histogram (a Lua `done` hook, bench/wrk_report.lua).",
        "- The baseline is a bare Django view returning a constant (`/bench/constant`, served only with "
        "`SYMPHONY_BENCH_VIEWS=true`) through the same middleware and gunicorn settings; each scenario's "
        "ratio is its req/s over the baseline's.",
        f"- Seed: one user with the `super_admin` role and an API key; {report['seed']['agents']} agents with "
        "agent-bound keys (used round-robin by wrk).",
        *[f"- Note: {note}" for note in report["seed"]["notes"]],
        "",
        "## Results",
        "",
        "| scenario | req/s | p50 ms | p95 ms | p99 ms | errors | ratio to bare | server CPU ms/req | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in report["results"]:
        if result["available"]:
            out.append(_row(result["scenario"], result["stats"], baseline))
        else:
            out.append(f"| {result['scenario']} | {NA}: {result['note']} | | | | | |")
    out += ["", *dispatch_section(report)]
    out += ["", "### Audit export", ""]
    out += audit_section(report["audit_export"])
    rss = report["rss"]
    out += [
        "",
        "## Start-up and memory",
        "",
        f"- Cold start: {report['cold_start_s']:.2f} s from launching gunicorn to the first 200 on "
        f"`{report['ready_path']}`, of which the gunicorn processes used {report.get('cold_start_cpu_s', 0):.2f} s "
        "of CPU (the wall time grows with the machine's load; the CPU time does not).",
        f"- RSS after the load: master {rss['master_mib']:.0f} MiB, workers "
        + ", ".join(f"{w:.0f}" for w in rss["workers_mib"])
        + " MiB.",
        "",
        "## sync versus gthread workers",
        "",
        *worker_classes(report),
        "",
        "## Targets",
        "",
        *targets(report),
        "",
        "## Capacity from server CPU",
        "",
        *capacity(report),
        "",
    ]
    return "\n".join(out)
