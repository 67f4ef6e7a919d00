"""The claim-and-complete loop: N agents, each on its own keep-alive connection, claim tasks and
complete them, as fast as the server lets them. Prints one JSON line (tasks/s and cycle latency).

``--batch 1`` (the default) claims one task and completes it with ``tasks/{id}/complete/``; ``--batch
N`` claims up to N (``max_tasks``) and completes them all with one ``POST agent/complete/``. The
PostgreSQL backends of the benchmark's database are timed too (``pg_cpu_ms`` per task), since the
database is what every instance shares.

Usage (bench/run.py calls it): python bench/dispatch_client.py --url http://127.0.0.1:PORT --agents 8
--seconds 10 [--batch 10], with the benchmark's environment (it seeds the tasks through Django first).
Agent keys come from BENCH_AGENT_KEYS (comma-separated).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Agent(threading.Thread):
    def __init__(self, url: str, key: str, deadline: float, batch: int = 1) -> None:
        super().__init__(daemon=True)
        self.batch = batch
        self.tasks = 0
        parsed = urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.deadline = deadline
        self.cycles: list[float] = []
        self.errors = 0
        self.empty_claims = 0
        self.first_error = ""

    def _post(self, path: str, body: dict) -> tuple[int, dict]:
        self.connection.request("POST", path, body=json.dumps(body), headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            started = time.monotonic()
            try:
                status, body = self._post("/api/v1/agent/claim/", {"max_tasks": self.batch})
                if status != 200:
                    self._error(f"claim {status} {str(body)[:200]}")
                    continue
                if not body["tasks"]:
                    self.empty_claims += 1
                    continue
                if self.batch == 1:
                    task = body["tasks"][0]
                    result = {"attempt": task.get("attempt"), "result": {"ok": True}}
                    status, body = self._post(f"/api/v1/tasks/{task['id']}/complete/", result)
                    done = 1 if status == 200 else 0
                else:
                    results = [
                        {"task": t["id"], "attempt": t["attempt"], "result": {"ok": True}} for t in body["tasks"]
                    ]
                    status, body = self._post("/api/v1/agent/complete/", {"results": results})
                    done = body.get("completed", 0) if status == 200 else 0
                    if status == 200 and done != len(results):
                        self._error(f"batch: {len(results) - done} entries refused: {str(body)[:200]}")
                if status != 200:
                    self._error(f"complete {status} {str(body)[:200]}")
                    continue
                self.tasks += done
                self.cycles.append(time.monotonic() - started)
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                self._error(repr(exc))
                self.connection.close()

    def _error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what


def postgres_backends() -> list[int]:
    """PIDs of the PostgreSQL backends connected to this benchmark's database (their CPU is the database's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


_seen: dict[int, float] = {}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of ``pids`` (PostgreSQL runs on this machine); a backend that exited keeps
    the last value seen, so the difference over a run counts it up to then."""
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            _seen[pid] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return sum(_seen.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=0, help="pending tasks to seed (default: 600 per second)")
    parser.add_argument("--batch", type=int, default=1, help="max_tasks per claim; above 1, batch completion")
    args = parser.parse_args()
    keys = [k for k in os.environ.get("BENCH_AGENT_KEYS", "").split(",") if k]
    if len(keys) < args.agents:
        raise SystemExit(f"need {args.agents} agent keys in BENCH_AGENT_KEYS, got {len(keys)}")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
    import django

    django.setup()
    from bench import seed_agents

    seed_agents.add_pending_tasks(args.tasks or (600 if args.batch == 1 else 2500) * args.seconds)
    backends = postgres_backends()
    pg_before = cpu_seconds(backends)

    deadline = time.monotonic() + args.seconds
    agents = [Agent(args.url, keys[i], deadline, args.batch) for i in range(args.agents)]
    started = time.monotonic()
    for agent in agents:
        agent.start()
    for agent in agents:
        agent.join(args.seconds + 30)
    elapsed = time.monotonic() - started
    backends = postgres_backends()  # those the run opened, and any that lived through it
    pg_cpu = cpu_seconds(backends) - pg_before
    cycles = [c for agent in agents for c in agent.cycles]
    tasks = sum(agent.tasks for agent in agents)
    print(
        json.dumps(
            {
                "agents": args.agents,
                "batch": args.batch,
                "requests": len(cycles),
                "tasks": tasks,
                "seconds": round(elapsed, 3),
                "rps": tasks / elapsed,
                "pg_cpu_ms": pg_cpu * 1000 / max(tasks, 1),
                "p50_ms": _percentile(cycles, 0.50) * 1000,
                "p95_ms": _percentile(cycles, 0.95) * 1000,
                "p99_ms": _percentile(cycles, 0.99) * 1000,
                "status_errors": sum(a.errors for a in agents),
                "connect_errors": 0,
                "read_errors": 0,
                "timeouts": 0,
                "empty_claims": sum(a.empty_claims for a in agents),
                "first_error": next((a.first_error for a in agents if a.first_error), ""),
                "load_1m": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
