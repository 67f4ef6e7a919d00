"""The claim-and-complete loop: N agents, each on its own keep-alive connection, claim one task and
complete it, as fast as the server lets them. Prints one JSON line (tasks/s and cycle latency).

Usage (bench/run.py calls it): python bench/dispatch_client.py --url http://127.0.0.1:PORT --agents 8
--seconds 10, with the benchmark's environment (it seeds the tasks through Django first).
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
    def __init__(self, url: str, key: str, deadline: float) -> None:
        super().__init__(daemon=True)
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
                status, body = self._post("/api/v1/agent/claim/", {"max_tasks": 1})
                if status != 200:
                    self._error(f"claim {status} {str(body)[:200]}")
                    continue
                if not body["tasks"]:
                    self.empty_claims += 1
                    continue
                task = body["tasks"][0]
                status, body = self._post(
                    f"/api/v1/tasks/{task['id']}/complete/", {"attempt": task.get("attempt"), "result": {"ok": True}}
                )
                if status != 200:
                    self._error(f"complete {status} {str(body)[:200]}")
                    continue
                self.cycles.append(time.monotonic() - started)
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                self._error(repr(exc))
                self.connection.close()

    def _error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=0, help="pending tasks to seed (default: 600 per second)")
    args = parser.parse_args()
    keys = [k for k in os.environ.get("BENCH_AGENT_KEYS", "").split(",") if k]
    if len(keys) < args.agents:
        raise SystemExit(f"need {args.agents} agent keys in BENCH_AGENT_KEYS, got {len(keys)}")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
    import django

    django.setup()
    from bench import seed_agents

    seed_agents.add_pending_tasks(args.tasks or 600 * args.seconds)

    deadline = time.monotonic() + args.seconds
    agents = [Agent(args.url, keys[i], deadline) for i in range(args.agents)]
    started = time.monotonic()
    for agent in agents:
        agent.start()
    for agent in agents:
        agent.join(args.seconds + 30)
    elapsed = time.monotonic() - started
    cycles = [c for agent in agents for c in agent.cycles]
    print(
        json.dumps(
            {
                "agents": args.agents,
                "requests": len(cycles),
                "seconds": round(elapsed, 3),
                "rps": len(cycles) / elapsed,
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
