"""Audit export at scale: make sure the trail holds N events, then time ``manage.py audit_export`` per
format and read each export's peak RSS from the kernel (wait4). Prints one JSON line.

Events are appended with PostgreSQL COPY, chained onto the current head with ``audit.chain`` so the
trail still verifies; this is fixture data for the benchmark, not the product's write path.
Usage: python bench/audit_export_bench.py --events 1000000 (with the benchmark's environment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COLUMNS = (
    "occurred_at", "event_type", "severity", "outcome", "actor_id", "actor_name", "api_key_prefix", "ip_address",
    "user_agent", "resource_type", "resource_id", "action", "details", "request_id", "trace_id", "project", "prev_hash",
    "hash",
)  # fmt: skip


def top_up(target: int) -> int:
    """Append events until the trail holds ``target``; return how many were added."""
    from django.db import connection, transaction

    from audit.chain import GENESIS_HASH, compute_hash
    from audit.models import AuditEvent

    have = AuditEvent.objects.count()
    missing = max(0, target - have)
    if not missing:
        return 0
    sequenced = any(f.name == "chain_seq" for f in AuditEvent._meta.fields)
    if sequenced:  # the chain runs in commit order (chain_seq), not id order
        head = AuditEvent.objects.filter(chain_seq__isnull=False).order_by("-chain_seq").values("hash", "chain_seq")
    else:
        head = AuditEvent.objects.order_by("-id").values("hash")
    head = head.first()
    prev = head["hash"] if head else GENESIS_HASH
    seq = head.get("chain_seq") or 0 if head else 0
    columns = (*COLUMNS, "chain_seq") if sequenced else COLUMNS
    start = datetime.now(UTC) - timedelta(days=30)
    statement = f"COPY {AuditEvent._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for i in range(missing):
            event = {
                "occurred_at": start + timedelta(microseconds=i * 2000),
                "event_type": "task.claimed",
                "severity": "info",
                "outcome": "success",
                "actor_id": None,
                "actor_name": "bench-agent",
                "api_key_prefix": "benchprefix",
                "ip_address": "127.0.0.1",
                "user_agent": "bench",
                "resource_type": "agents.task",
                "resource_id": str(i),
                "action": "claim",
                "details": {"n": i, "note": "=cmd|' /C calc'!A0" if i % 1000 == 0 else "ok"},
                "request_id": f"bench-{i}",
                "trace_id": "",
                "project": "default",
            }
            digest = compute_hash(event, prev)
            row = [event[c] for c in COLUMNS[:-2]]
            row[COLUMNS.index("details")] = json.dumps(event["details"])
            copy.write_row([*row, prev, digest, *([seq + i + 1] if sequenced else [])])
            prev = digest
    return missing


def export(fmt: str, env: dict[str, str], out_dir: Path) -> dict:
    target = out_dir / f"audit.{fmt}"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "audit_export", "--format", fmt, "--output", str(target)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"audit_export --format {fmt} failed: {process.stderr.read().decode()[-500:]}")
    size = target.stat().st_size
    target.unlink()
    return {"format": fmt, "seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--formats", default="csv,jsonl,json")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
    import django

    django.setup()
    from audit.models import AuditEvent

    started = time.monotonic()
    added = top_up(args.events)
    seeding = time.monotonic() - started
    events = AuditEvent.objects.count()
    rows = []
    with tempfile.TemporaryDirectory(prefix="symphony-audit-") as tmp:
        for fmt in args.formats.split(","):
            rows.append({"events": events, **export(fmt, dict(os.environ), Path(tmp))})
    print(json.dumps({"rows": rows, "added": added, "seeding_seconds": round(seeding, 1)}))


if __name__ == "__main__":
    main()
