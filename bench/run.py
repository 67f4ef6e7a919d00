#!/usr/bin/env python3
"""`make bench`: Symphony under gunicorn with production settings on PostgreSQL and Redis, loaded by
wrk on loopback; writes docs/BENCHMARKS.md.

Uses the PostgreSQL database ``symphony_bench`` (``BENCH_DB``; dropped and created each run) and Redis
database 6 (``BENCH_REDIS_URL``), ports 18550-18599 (``BENCH_PORT_BASE``). ``--only dispatch`` runs the
bare baseline and the dispatch loops alone (single and batched claims, and the SQL floor of
bench/sql_floor.py) and rewrites only the dispatch section of docs/BENCHMARKS.md. Scenarios whose
endpoints are not there are reported as "not available". gunicorn is
always stopped, whatever fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

ROOT = harness.ROOT
PG_SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
# Overridable so that several people sharing a machine do not bench into each other's database.
DB_NAME = os.environ.get("BENCH_DB", "symphony_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
_PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "18550"))
PORTS = iter(range(_PORT_BASE, _PORT_BASE + 50))
LUA = ROOT / "bench" / "wrk_report.lua"

# Targets of issue 7, for this 2-core machine with the load generator on it.
TARGET_API_RPS = 1000
TARGET_API_P95_MS = 50
TARGET_API_RATIO = 0.5
TARGET_LIVE_P95_MS = 5
TARGET_COLD_START_S = 3
TARGET_RSS_MIB = 150


@dataclass
class Scenario:
    name: str
    path: str
    method: str = "GET"
    body: str = ""
    auth: str = ""  # "", "user" or "agents"
    expect: int = 200
    is_api: bool = False


@dataclass
class Result:
    scenario: str
    available: bool
    note: str = ""
    stats: dict = field(default_factory=dict)


SCENARIOS = [
    Scenario("bare Django view (baseline)", "/bench/constant"),
    Scenario("/health/live", "/health/live"),
    Scenario("GET /api/v1/me/ (API key)", "/api/v1/me/", auth="user", is_api=True),
    Scenario("GET /api/v1/agents/ (50 agents)", "/api/v1/agents/", auth="user", is_api=True),
    Scenario("POST /api/v1/agent/heartbeat/", "/api/v1/agent/heartbeat/", method="POST", body="{}", auth="agents"),
]


def sh(command: list[str], *, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True) -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def bench_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    (tmp / "prometheus").mkdir(exist_ok=True)
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"{PG_SERVER}/{DB_NAME}",
            "REDIS_URL": REDIS_URL,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SYMPHONY_BENCH_VIEWS": "true",
            "SYMPHONY_VAR_DIR": str(tmp / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
            "OTEL_SDK_DISABLED": "true",
            # Rate limits stay on (their Redis round trip is part of the cost measured) but high enough
            # that wrk's flood is never refused.
            "SYMPHONY_RATELIMIT_DEFAULT": "1000000000/1s",
        }
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def prepare_database(env: dict[str, str]) -> None:
    """A fresh symphony_bench every run: same starting point each time, whatever the migrations became."""
    sh(["psql", f"{PG_SERVER}/postgres", "-c", f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"])
    sh(["psql", f"{PG_SERVER}/postgres", "-c", f"CREATE DATABASE {DB_NAME}"])
    sh(["redis-cli", "-u", REDIS_URL, "flushdb"])
    sh([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env)


def wrk(url: str, *, seconds: int, connections: int, threads: int, scenario: Scenario, keys: list[str]) -> dict:
    env = dict(os.environ, WRK_METHOD=scenario.method, WRK_BODY=scenario.body, WRK_KEYS=",".join(keys))
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
               "-s", str(LUA), url]  # fmt: skip
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((line for line in out.splitlines() if line.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    return json.loads(line.removeprefix("WRK_JSON "))


def keys_for(scenario: Scenario, seed: dict) -> list[str] | None:
    if scenario.auth == "user":
        return [seed["user_key"]]
    if scenario.auth == "agents":
        return seed["agent_keys"] or None
    return []


def run_scenario(server: harness.Server, scenario: Scenario, seed: dict, args: argparse.Namespace) -> Result:
    keys = keys_for(scenario, seed)
    if keys is None:
        return Result(scenario.name, False, "no agent keys (agents not seeded on this branch)")
    headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
    body = scenario.body.encode() if scenario.body else None
    status = harness.status_of(server.base + scenario.path, headers=headers, method=scenario.method, body=body)
    if status != scenario.expect:
        return Result(scenario.name, False, f"{scenario.method} {scenario.path} answered {status}")
    # Warm up every worker's connections and caches, then measure.
    wrk(server.base + scenario.path, seconds=2, connections=args.connections, threads=args.threads,
        scenario=scenario, keys=keys)  # fmt: skip
    # Server CPU per request (all gunicorn processes) does not depend on what else runs on the machine,
    # unlike req/s and latency: it is the figure to compare when the machine was shared.
    processes = [server.process.pid, *harness.children(server.process.pid)]
    cpu_before = harness.cpu_seconds(processes)
    stats = wrk(server.base + scenario.path, seconds=args.duration, connections=args.connections,
                threads=args.threads, scenario=scenario, keys=keys)  # fmt: skip
    stats["server_cpu_ms"] = (harness.cpu_seconds(processes) - cpu_before) * 1000 / max(stats["requests"], 1)
    stats["load_1m"] = os.getloadavg()[0]  # other work on the machine skews every figure: record it
    return Result(scenario.name, True, stats=stats)


def worker_rss(server: harness.Server) -> dict:
    workers = harness.children(server.process.pid)
    return {
        "master_mib": harness.rss_mib(server.process.pid),
        "workers_mib": [round(harness.rss_mib(pid), 1) for pid in workers],
    }


def run_script(script: Path, env: dict[str, str], extra: list[str], timeout: float) -> dict:
    """Run a helper benchmark (bench_dispatch.py, bench_audit.py) that prints one JSON object last."""
    out = sh([sys.executable, str(script), *extra], env=env, timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))  # fmt: skip
    import django
    import gunicorn
    import psycopg

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "psycopg": psycopg.__version__,
        "postgresql": sh(["psql", f"{PG_SERVER}/postgres", "-tAc", "SHOW server_version"]).strip(),
        "redis": _redis_version(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
        "load_at_start": os.getloadavg(),
    }


def _redis_version() -> str:
    info = sh(["redis-cli", "-u", REDIS_URL, "info", "server"]).splitlines()
    return next(line.split(":", 1)[1] for line in info if line.startswith("redis_version")).strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn workers")
    parser.add_argument("--gthread-threads", type=int, default=4)
    parser.add_argument("--events", type=int, default=1_000_000, help="audit events for the export scenario")
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--only", choices=["all", "dispatch", "claim_wait"], default="all")
    args = parser.parse_args()
    if args.only == "claim_wait":
        return claim_wait_only(args)
    for tool in ["wrk", "psql", "redis-cli"]:
        if not shutil.which(tool):
            print(f"bench: {tool} is not installed", file=sys.stderr)
            return 2

    with tempfile.TemporaryDirectory(prefix="symphony-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = bench_env(tmp)
        log = tmp / "gunicorn.log"
        report = {"machine": machine(), "args": vars(args) | {"output": str(args.output)}, "started": _now()}
        print("bench: preparing database", DB_NAME, flush=True)
        prepare_database(env)
        seed = json.loads(sh([sys.executable, "bench/seed.py"], env=env | {"BENCH_AGENTS": "50"}).splitlines()[-1])
        report["seed"] = {"agents": seed["agents"], "notes": seed["notes"]}
        ready_path = "/health/ready"
        if not _has_path(env, ready_path):
            ready_path = "/health/live"
        report["ready_path"] = ready_path

        if args.only == "dispatch":
            return dispatch_only(env, seed, args, log, ready_path, report)
        results: list[Result] = []
        print(f"bench: gunicorn sync x{args.workers}", flush=True)
        with harness.gunicorn(env, next(PORTS), workers=args.workers, log=log, ready_path=ready_path) as server:
            report["cold_start_s"] = round(server.ready_after, 3)
            report["cold_start_cpu_s"] = round(server.ready_cpu, 3)
            for scenario in SCENARIOS:
                print("bench:", scenario.name, flush=True)
                results.append(run_scenario(server, scenario, seed, args))
            report["rss"] = worker_rss(server)
        report["results"] = [vars(r) for r in results]

        report["worker_classes"] = compare_worker_classes(env, seed, args, log, ready_path)
        report["dispatch"] = dispatch(env, seed, args, log, ready_path)
        report["audit_export"] = audit_export(env, args)
        report["finished"] = _now()
        (ROOT / "bench" / "results").mkdir(exist_ok=True)
        (ROOT / "bench" / "results" / "latest.json").write_text(json.dumps(report, indent=2))
        from bench import report as markdown

        previous = args.output.read_text() if args.output.exists() else ""
        args.output.write_text(markdown.keep_hand_written(previous, markdown.render(report)))
        print(f"bench: wrote {args.output}", flush=True)
    claim_wait_only(args)
    return 0


def claim_wait_only(args) -> int:
    """bench/bench_claim_wait.py (its own PostgreSQL cluster and servers); rewrite its section of the report."""
    from bench import report as markdown

    print("bench: claims that wait for work (bench/bench_claim_wait.py)", flush=True)
    load, started = list(os.getloadavg()), _now()
    try:
        result = run_script(ROOT / "bench" / "bench_claim_wait.py", dict(os.environ), [], timeout=900)
    except Exception as exc:  # noqa: BLE001 - reported in the section
        result = {"available": False, "error": str(exc)[-500:]}
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "claim-wait-latest.json").write_text(json.dumps(result, indent=2))
    section = markdown.claim_wait_section(result, started, load)
    text = args.output.read_text() if args.output.exists() else ""
    args.output.write_text(markdown.replace_section(text, section))
    print("\n".join(section), flush=True)
    return 0 if result.get("available") else 1


def _has_path(env: dict[str, str], path: str) -> bool:
    probe = f"from django.urls import resolve, Resolver404\ntry:\n resolve({path!r})\nexcept Resolver404:\n print('no')"
    out = sh([sys.executable, "manage.py", "shell", "-c", probe], env=env)
    return "no" not in out


def dispatch_only(env, seed, args, log, ready_path, report) -> int:
    """The bare baseline, then the dispatch loops; rewrite the dispatch section of the report only."""
    with harness.gunicorn(env, next(PORTS), workers=args.workers, log=log, ready_path=ready_path) as server:
        report["results"] = [vars(run_scenario(server, SCENARIOS[0], seed, args))]
    report["dispatch"] = dispatch(env, seed, args, log, ready_path)
    report["finished"] = _now()
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "dispatch-latest.json").write_text(json.dumps(report, indent=2))
    from bench import report as markdown

    section = markdown.dispatch_section(report)
    text = args.output.read_text() if args.output.exists() else ""
    args.output.write_text(markdown.replace_section(text, section))
    print("\n".join(section), flush=True)
    return 0


def compare_worker_classes(env, seed, args, log, ready_path) -> list[dict]:
    """sync vs gthread on the authenticated API (and the baseline, for the ratio)."""
    rows = []
    chosen = [s for s in SCENARIOS if s.path in {"/bench/constant", "/api/v1/me/"}]
    for worker_class, threads in [("sync", 1), ("gthread", args.gthread_threads)]:
        print(f"bench: worker class {worker_class}", flush=True)
        with harness.gunicorn(env, next(PORTS), workers=args.workers, worker_class=worker_class, threads=threads,
                              log=log, ready_path=ready_path) as server:  # fmt: skip
            for scenario in chosen:
                result = run_scenario(server, scenario, seed, args)
                rows.append({"worker_class": worker_class, "threads": threads, **vars(result)})
    return rows


def dispatch(env, seed, args, log, ready_path) -> dict:
    """The claim-and-complete loop against this run's gunicorn, with bench/dispatch_client.py.

    (bench/bench_dispatch.py, the agents helper's benchmark, starts its own gunicorn on its own database and
    ports, and also measures submission-to-claim latency; run it separately, see docs/agents.md.)
    """
    script = ROOT / "bench" / "dispatch_client.py"
    if len(seed["agent_keys"]) < 32:
        return {"available": False, "note": "needs 32 seeded agents (agents app not on this branch)"}
    env = env | {"BENCH_AGENT_KEYS": ",".join(seed["agent_keys"])}
    rows = []
    with harness.gunicorn(env, next(PORTS), workers=args.workers, log=log, ready_path=ready_path) as server:
        for agents, batch in ((8, 1), (32, 1), (8, 10)):
            print(f"bench: claim-and-complete with {agents} agents, {batch} per claim", flush=True)
            try:
                extra = ["--url", server.base, "--agents", str(agents), "--seconds", str(args.duration),
                         "--batch", str(batch)]  # fmt: skip
                processes = [server.process.pid, *harness.children(server.process.pid)]
                cpu_before = harness.cpu_seconds(processes)
                row = run_script(script, env, extra, timeout=args.duration + 300)
                # Includes the client's task seeding through Django in its own process: not counted here.
                tasks = row.get("tasks", row["requests"])
                row["server_cpu_ms"] = (harness.cpu_seconds(processes) - cpu_before) * 1000 / max(tasks, 1)
                rows.append(row)
            except Exception as exc:  # noqa: BLE001 - one failed scenario must not lose the others
                rows.append({"agents": agents, "batch": batch, "error": str(exc)[-500:]})
    floor = None
    try:
        print("bench: SQL floor (bench/sql_floor.py, 16 psycopg clients)", flush=True)
        floor = run_script(ROOT / "bench" / "sql_floor.py", env, ["--database-url", env["DATABASE_URL"]], 300)
    except Exception as exc:  # noqa: BLE001
        floor = {"error": str(exc)[-500:]}
    return {"available": True, "rows": rows, "client": script.name, "sql_floor": floor}


def audit_export(env, args) -> dict:
    """The audit helper's bench/bench_audit.py (writes, 1M-row load, verify, API CSV export) when present,
    then our bench/audit_export_bench.py (``manage.py audit_export`` per format, peak RSS)."""
    if args.skip_audit:
        return {"available": False, "note": "skipped (--skip-audit)"}
    if not (ROOT / "audit" / "management" / "commands" / "audit_export.py").exists():
        return {"available": False, "note": "manage.py audit_export is not on this branch"}
    report: dict = {"available": True}
    helper = ROOT / "bench" / "bench_audit.py"
    if helper.exists():
        print(f"bench: bench_audit.py --rows {args.events}", flush=True)
        result = subprocess.run([sys.executable, str(helper), "--rows", str(args.events)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=3600)  # fmt: skip
        try:
            report["helper"] = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
            report["helper"]["exit_code"] = result.returncode
        except ValueError:
            report["helper"] = {"error": (result.stdout + result.stderr)[-500:]}
    print(f"bench: audit_export of {args.events} events per format", flush=True)
    try:
        report |= run_script(ROOT / "bench" / "audit_export_bench.py", env, ["--events", str(args.events)], 3600)
    except Exception as exc:  # noqa: BLE001 - keep the helper's figures
        report["note"] = f"audit_export_bench.py failed: {str(exc)[-500:]}"
    return report


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"bench: done in {time.monotonic() - started:.0f}s", flush=True)
    sys.exit(code)
