#!/usr/bin/env python3
"""The SQL floor of dispatch: how many claims per second PostgreSQL itself sustains here, with no HTTP,
Django or audit in the way. Prints one JSON line.

A copy of the tasks table (``LIKE agents_task INCLUDING DEFAULTS INCLUDING INDEXES``: same columns,
same indexes, the claim's partial index included) is filled with pending rows; C client processes
(psycopg, autocommit off) each loop
``SELECT id ... FOR UPDATE SKIP LOCKED LIMIT 1`` in dispatch order, then ``UPDATE`` it to running,
then ``COMMIT``, for the given seconds. The HTTP figures of bench/run.py are reported as a fraction
of this one, measured in the same run on the same machine.

    python bench/sql_floor.py --database-url postgres://postgres@127.0.0.1:5432/symphony_bench [--clients 16]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time

import psycopg
from psycopg import sql

TABLE = "bench_sql_floor"
CLAIM = sql.SQL(
    "SELECT id FROM {} WHERE status = 'pending' ORDER BY priority DESC, fair_seq, created_at, id"
    " LIMIT 1 FOR UPDATE SKIP LOCKED"
).format(sql.Identifier(TABLE))
LEASE = sql.SQL(
    "UPDATE {} SET status = 'running', attempts = attempts + 1, lease_expires_at = now() + interval '60 seconds',"
    " claimed_at = now(), updated_at = now() WHERE id = %s"
).format(sql.Identifier(TABLE))


def prepare(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (LIKE agents_task INCLUDING DEFAULTS INCLUDING INDEXES)")
        # Every NOT NULL column gets a plain value of its type (the ORM, not the table, holds defaults).
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'agents_task'"
            " AND is_nullable = 'NO' AND column_default IS NULL AND column_name <> 'id'"
        ).fetchall()
        zero = {"jsonb": "'{}'::jsonb", "boolean": "false", "date": "current_date", "uuid": "gen_random_uuid()"}
        fixed = {"status": "'pending'", "kind": "'bench'", "required_capabilities": "'[]'::jsonb", "priority": "1"}
        names, values = [], []
        for name, data_type in columns:
            names.append(sql.Identifier(name))
            if name in fixed:
                value = fixed[name]
            elif data_type.startswith("timestamp"):
                value = "now()"
            elif data_type in ("integer", "bigint", "smallint"):
                value = "0"
            else:
                value = zero.get(data_type, "''")
            values.append(sql.SQL(value))
        conn.execute(
            sql.SQL("INSERT INTO {} (id, {}) SELECT g, {} FROM generate_series(1, %s) AS g").format(
                sql.Identifier(TABLE), sql.SQL(", ").join(names), sql.SQL(", ").join(values)
            ),
            [rows],
        )
        conn.execute(f"ANALYZE {TABLE}")


def client(url: str, seconds: float, start: multiprocessing.Event, out: multiprocessing.Queue) -> None:
    done = 0
    with psycopg.connect(url) as conn:
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            row = conn.execute(CLAIM).fetchone()
            if row is None:
                conn.commit()
                break
            conn.execute(LEASE, row)
            conn.commit()
            done += 1
    out.put(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    prepare(args.database_url, args.rows)
    start, out = multiprocessing.Event(), multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=client, args=(args.database_url, args.seconds, start, out))
        for _ in range(args.clients)
    ]
    for proc in procs:
        proc.start()
    time.sleep(0.5)
    began = time.monotonic()
    start.set()
    total = sum(out.get() for _ in procs)
    elapsed = time.monotonic() - began
    for proc in procs:
        proc.join()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    print(json.dumps({"clients": args.clients, "claims": total, "seconds": round(elapsed, 3),
                      "claims_per_s": total / elapsed, "load_1m": os.getloadavg()[0]}))  # fmt: skip


if __name__ == "__main__":
    main()
