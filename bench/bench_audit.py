"""Audit trail benchmarks (PostgreSQL): record() throughput under 8 writers, and a 1,000,000-row CSV export.

    createdb -h 127.0.0.1 -U postgres symphony_audit_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/symphony_audit_bench python bench/bench_audit.py

(a) 1 and 8 writer processes (``--driver threads`` for threads of one process, which on two cores
    measure the GIL), each with its own connection, call ``audit.record()`` in their own transactions
    for a fixed number of events; events/s is reported with the seal latency (commit to sealed by the
    background sealer, p50/p99) and the chain verified afterwards. ``--writes-only`` stops there. Set
    SYMPHONY_AUDIT_SIGNING_KEY_FILE and SYMPHONY_AUDIT_CHECKPOINT_DIR (and SYMPHONY_AUDIT_CHECKPOINT_EVERY)
    to measure with automatic checkpoints; the folder is emptied with the table. ``--checkpoint-overhead N``
    compares only that, off against on (every N), in alternating blocks. For scale,
    the same is measured with 1 writer, and with 8 writers doing a plain unchained INSERT of the
    same row (what the advisory lock costs).
(b) 1,000,000 events are loaded with COPY, with a *valid* chain computed in Python (so the same
    data also times ``audit_verify``), then exported as CSV through the API with Django's test
    client in a fresh child process, which reports the time and its peak RSS growth (ru_maxrss
    minus the RSS just before the request). The bound checked: growth < 100 MB.

The audit table of the target database is emptied first: point it at a database of its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghijklmnop")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

import audit  # noqa: E402
from audit import services  # noqa: E402
from audit.chain import GENESIS_HASH, HASHED_FIELDS, OPTIONAL_HASHED_FIELDS, compute_hash  # noqa: E402
from audit.verification import verify_chain  # noqa: E402

RSS_LIMIT_MB = 100


def _empty_table() -> None:
    # The trigger lets superusers and members of symphony_audit_purger TRUNCATE: run this as one.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditevent RESTART IDENTITY")
    # With checkpoints on (SYMPHONY_AUDIT_CHECKPOINT_DIR), start their folder afresh too: the old
    # ones would (rightly) refuse to be continued by a new chain.
    folder = settings.SYMPHONY_AUDIT_CHECKPOINT_DIR
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        services._known_checkpoint_seq.clear()


def _run_writers(threads: int, per_thread: int, work) -> float:
    """``threads`` writer threads of this process, each with its own connection; events/s."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait()
            for i in range(per_thread):
                work(n, i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return threads * per_thread / elapsed


def _writer_process(n: int, per_writer: int, work, barrier, done, out) -> None:
    """One writer process: ``per_writer`` calls of ``work``, the wall-clock time after each commit."""
    try:
        connection.ensure_connection()
        barrier.wait()
        committed = []
        for i in range(per_writer):
            work(n, i)
            committed.append(time.time())
        out.put((n, committed, None))
        # Stay alive (with this process's sealer) until the monitor has seen every event sealed:
        # the latency measured is the background sealing's, not an exit-time flush.
        done.wait(timeout=120)
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        out.put((n, [], repr(exc)))
    finally:
        connections.close_all()


def _run_writer_processes(writers: int, per_writer: int, work, *, sealed: bool) -> dict:
    """``writers`` processes (forked: each its own interpreter, GIL and connection) calling ``work``.

    Returns events/s (first start to last commit) and, when ``sealed``, the seal latency: for each
    event, the time from its commit (taken in the writer right after the transaction returned) to
    the moment a monitor polling the table every 10 ms first saw it sealed.
    """
    import multiprocessing
    import statistics

    ctx = multiprocessing.get_context("fork")
    connections.close_all()  # nothing shared across the fork
    barrier, done, out = ctx.Barrier(writers + 1), ctx.Event(), ctx.Queue()
    pool = [ctx.Process(target=_writer_process, args=(n, per_writer, work, barrier, done, out)) for n in range(writers)]
    for process in pool:
        process.start()
    seen: dict[str, float] = {}
    last_seq = 0
    barrier.wait()
    started = time.time()
    results: dict[int, list[float]] = {}
    deadline = started + 600
    total = writers * per_writer
    with connection.cursor() as cursor:
        while time.time() < deadline:
            if sealed:
                cursor.execute(
                    "SELECT chain_seq, resource_id FROM audit_auditevent WHERE chain_seq > %s ORDER BY chain_seq",
                    [last_seq],
                )
                now = time.time()
                for seq, resource_id in cursor.fetchall():
                    seen[resource_id] = now
                    last_seq = seq
            while not out.empty():
                n, committed, error = out.get()
                if error:
                    raise RuntimeError(f"writer {n}: {error}")
                results[n] = committed
            if len(results) == writers and (not sealed or len(seen) >= total):
                break
            time.sleep(0.01)
    done.set()
    for process in pool:
        process.join()
    connections.close_all()
    if len(results) != writers:
        raise RuntimeError("a writer did not finish")
    finished = max(max(c) for c in results.values())
    report = {"per_s": total / (finished - started)}
    if sealed:
        latencies = sorted(
            seen[f"{n}-{i}"] - committed
            for n, times in results.items()
            for i, committed in enumerate(times)
            if f"{n}-{i}" in seen
        )
        if len(latencies) != total:
            raise RuntimeError(f"only {len(latencies)} of {total} events were sealed within 600 s")
        report["seal_latency_p50_ms"] = 1000 * statistics.median(latencies)
        report["seal_latency_p99_ms"] = 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        report["seal_latency_max_ms"] = 1000 * latencies[-1]
    return report


def _record(n: int, i: int) -> None:
    with transaction.atomic():
        audit.record("task.claimed", resource_type="agents.task", resource_id=f"{n}-{i}", details={"attempt": 1})


def _record_then_work(n: int, i: int) -> None:
    # A service that records, then does 5 ms more work in the same transaction (row updates, a
    # second query...): what a lock held until the caller's commit makes everyone wait for.
    with transaction.atomic():
        audit.record("task.claimed", resource_type="agents.task", resource_id=f"{n}-{i}", details={"attempt": 1})
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.005)")


def _plain_insert(n: int, i: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (occurred_at, event_type, severity, outcome, actor_name, api_key_prefix,"
            " user_agent, resource_type, resource_id, action, details, request_id, trace_id, prev_hash)"
            " VALUES (now(), 'task.claimed', 'info', 'success', '', '', '', 'agents.task', %s, '', '{}', '', '', '')",
            [f"{n}-{i}"],
        )


def bench_writes(per_writer: int, *, driver: str = "processes") -> dict:
    """record() with 1 and 8 writers (events/s, seal latency), the chain verified; plain INSERTs for scale.

    ``driver`` "processes" (the default) forks one process per writer, as gunicorn workers are;
    "threads" runs the writers as threads of this process, which on a small machine measures the
    GIL more than the database (see docs/audit.md, Figures).
    """
    results: dict = {"driver": driver}

    def run(writers: int, count: int, work, *, sealed: bool) -> dict:
        if driver == "threads":
            rate = _run_writers(writers, count, work)
            if sealed:
                services.seal_now()  # threads share one sealer; the latency is measured with processes
            return {"per_s": rate}
        return _run_writer_processes(writers, count, work, sealed=sealed)

    for writers, count in ((1, per_writer * 2), (8, per_writer)):
        _empty_table()
        measured = run(writers, count, _record, sealed=True)
        prefix = f"record_{writers}_writer{'s' if writers > 1 else ''}"
        results[f"{prefix}_per_s"] = measured.pop("per_s")
        results |= {f"{prefix}_{key}": value for key, value in measured.items()}
        check = verify_chain(seal=False)  # sealed in the background, while the writers were alive
        results[f"{prefix}_chain_ok"] = check.ok
        results[f"{prefix}_unsealed_after_run"] = check.unsealed
        assert check.ok and check.checked == writers * count and check.unsealed == 0, check
    if settings.SYMPHONY_AUDIT_CHECKPOINT_DIR:
        results["checkpoints_written_8_writers"] = len(os.listdir(settings.SYMPHONY_AUDIT_CHECKPOINT_DIR))
    _empty_table()
    results["record_then_5ms_work_8_writers_per_s"] = run(8, per_writer // 4, _record_then_work, sealed=False)["per_s"]
    _empty_table()
    results["plain_insert_1_writer_per_s"] = run(1, per_writer * 2, _plain_insert, sealed=False)["per_s"]
    _empty_table()
    results["plain_insert_8_writers_per_s"] = run(8, per_writer, _plain_insert, sealed=False)["per_s"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        results["synchronous_commit"] = cursor.fetchone()[0]
    _empty_table()
    return results


def bench_checkpoint_overhead(*, blocks: int, per_thread: int, every: int) -> dict:
    """record() with 8 writers, automatic checkpoints off and on (every ``every`` events), in alternating blocks.

    A shared machine's load drifts by more than the difference measured: alternating the order
    block by block (off/on, on/off, ...) and taking medians keeps the drift out of the comparison.
    """
    import statistics
    import tempfile

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    scratch = Path(tempfile.mkdtemp(prefix="symphony-bench-checkpoints-"))
    key = scratch / "signing-key.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    rates: dict[str, list[float]] = {"off": [], "on": []}
    written = []
    for block in range(blocks):
        for mode in ("off", "on") if block % 2 == 0 else ("on", "off"):
            settings.SYMPHONY_AUDIT_SIGNING_KEY_FILE = str(key) if mode == "on" else ""
            settings.SYMPHONY_AUDIT_CHECKPOINT_DIR = str(scratch / "checkpoints") if mode == "on" else ""
            settings.SYMPHONY_AUDIT_CHECKPOINT_EVERY = every
            _empty_table()
            rates[mode].append(_run_writers(8, per_thread, _record))
            if mode == "on":
                written.append(len(os.listdir(scratch / "checkpoints")))
    settings.SYMPHONY_AUDIT_SIGNING_KEY_FILE = settings.SYMPHONY_AUDIT_CHECKPOINT_DIR = ""
    _empty_table()
    shutil.rmtree(scratch, ignore_errors=True)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    return {
        "every": every,
        "events_per_block": 8 * per_thread,
        "blocks": blocks,
        "checkpoints_per_block": written,
        "off_per_s": [round(rate, 1) for rate in rates["off"]],
        "on_per_s": [round(rate, 1) for rate in rates["on"]],
        "median_off_per_s": round(off, 1),
        "median_on_per_s": round(on, 1),
        "median_change_percent": round(100 * (on - off) / off, 1),
    }


def load_events(count: int) -> float:
    """COPY ``count`` events with a valid chain; return seconds taken."""
    _empty_table()
    started = time.perf_counter()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    types = ["auth.login", "task.claimed", "agent.updated", "authz.permission.denied", "apikey.created"]
    columns = ("id", "chain_seq", "prev_hash", "hash", *HASHED_FIELDS, *OPTIONAL_HASHED_FIELDS)
    prev = GENESIS_HASH
    with transaction.atomic():
        connection.ensure_connection()
        raw = connection.connection  # the psycopg connection under Django's wrapper
        with raw.cursor() as cursor, cursor.copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
            for i in range(1, count + 1):
                row = {
                    "id": i,
                    "chain_seq": i,
                    "occurred_at": start + dt.timedelta(milliseconds=37 * i),
                    "event_type": types[i % len(types)],
                    "severity": "info",
                    "outcome": "success",
                    "actor_id": None,
                    "actor_name": f"user{i % 97}",
                    "api_key_prefix": f"k{i % 13:07d}",
                    "ip_address": f"10.0.{i % 250}.{i % 200 + 1}",
                    "user_agent": "bench/1.0",
                    "resource_type": "agents.task",
                    "resource_id": str(i),
                    "action": "claim" if i % 10 else "=SUM(A1)",
                    "details": {"attempt": i % 3, "queue": "default"},
                    "request_id": f"req-{i:08x}",
                    "trace_id": "",
                    "project": "default",
                }
                row["prev_hash"] = prev
                row["hash"] = prev = compute_hash(row, prev)
                copy.write_row([json.dumps(row[c]) if c == "details" else row[c] for c in columns])
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence('audit_auditevent', 'id'), %s)", [count])
            cursor.execute("ANALYZE audit_auditevent")
    return time.perf_counter() - started


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def export_child() -> None:
    """Run in a fresh process: export everything as CSV through the API, report time and RSS growth."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    user, _ = get_user_model().objects.get_or_create(username="bench-exporter", defaults={"is_superuser": True})
    client = Client()
    client.force_login(user)
    warm = client.get("/api/v1/audit-events/export/?format=csv&until=2026-01-01T00:00:01Z")
    b"".join(warm.streaming_content)  # warm the code paths and caches
    from audit.models import AuditEvent

    expected_rows = AuditEvent.objects.count()  # everything existing when the export starts
    baseline_kb = _rss_kb()
    started = time.perf_counter()
    response = client.get("/api/v1/audit-events/export/?format=csv")
    first_byte = None
    lines = size = 0
    for chunk in response.streaming_content:
        if first_byte is None:
            first_byte = time.perf_counter() - started
        size += len(chunk)
        lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "status": response.status_code,
                "rows": lines - 1,
                "expected_rows": expected_rows,
                "bytes": size,
                "seconds": round(elapsed, 2),
                "first_byte_seconds": round(first_byte or 0, 3),
                "rows_per_s": round((lines - 1) / elapsed),
                "rss_baseline_mb": round(baseline_kb / 1024, 1),
                "rss_peak_growth_mb": round((peak_kb - baseline_kb) / 1024, 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-thread", type=int, default=1000, help="record() calls per writer")
    parser.add_argument(
        "--driver", choices=("processes", "threads"), default="processes", help="how writers run (default: processes)"
    )
    parser.add_argument("--writes-only", action="store_true", help="only (a): skip the 1M-row load and export")
    parser.add_argument("--rows", type=int, default=1_000_000, help="events to load for the export")
    parser.add_argument("--export-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--checkpoint-overhead",
        type=int,
        metavar="N",
        help="only compare record() with automatic checkpoints every N events against none (alternating blocks)",
    )
    parser.add_argument("--blocks", type=int, default=6, help="blocks per mode for --checkpoint-overhead")
    args = parser.parse_args()
    if args.export_child:
        export_child()
        return
    if connection.vendor != "postgresql":
        sys.exit("bench_audit needs DATABASE_URL pointing at PostgreSQL")

    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if args.checkpoint_overhead is not None:
        result = bench_checkpoint_overhead(
            blocks=args.blocks, per_thread=args.per_thread, every=args.checkpoint_overhead
        )
        print(json.dumps(result, indent=2))
        return
    report: dict = {"writes": bench_writes(args.per_thread, driver=args.driver)}
    if args.writes_only:
        for key, value in report["writes"].items():
            if isinstance(value, float):
                report["writes"][key] = round(value, 1)
        print(json.dumps(report, indent=2))
        return
    report["load"] = {"rows": args.rows, "seconds": round(load_events(args.rows), 1)}
    started = time.perf_counter()
    check = verify_chain(seal=False)
    report["verify"] = {"ok": check.ok, "events": check.checked, "seconds": round(time.perf_counter() - started, 1)}
    child = subprocess.run(
        [sys.executable, __file__, "--export-child"], capture_output=True, text=True, check=True, env=os.environ
    )
    report["export_csv"] = json.loads(child.stdout.strip().splitlines()[-1])
    for section in report["writes"], report["export_csv"]:
        for key, value in section.items():
            if isinstance(value, float):
                section[key] = round(value, 1)
    print(json.dumps(report, indent=2))
    growth = report["export_csv"]["rss_peak_growth_mb"]
    # The child's login and warm-up export add a few events on top of the loaded ones.
    if growth >= RSS_LIMIT_MB or report["export_csv"]["rows"] != report["export_csv"]["expected_rows"]:
        sys.exit(f"FAIL: export RSS growth {growth} MB (limit {RSS_LIMIT_MB}) or wrong row count")


if __name__ == "__main__":
    main()
