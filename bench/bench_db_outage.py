"""What clients see while PostgreSQL is stopped, and while it is stalled, under a steady load.

Starts a private PostgreSQL cluster (tests/servers.py: initdb + pg_ctl on a spare port) and gunicorn
(config/gunicorn.conf.py, 2 sync workers) on it; a few client threads submit tasks
(``POST /api/v1/tasks/``, each with its own idempotency key) and a prober asks ``/health/live`` and
``/health/ready`` twice a second. After a warm-up the database is stopped (``pg_ctl stop -m fast``)
or stalled (SIGSTOP of the postmaster and every backend) for ``--fault`` seconds, then brought back.

Reported per scenario: answers by status code (and error code) during the fault and after it, the
slowest answer, the liveness answers during the fault, how long after the database came back the
first task was accepted, and the bookkeeping check: every 201 task exists
afterwards, and no task exists behind a 5xx unless that answer said the outcome is unknown.

    python bench/bench_db_outage.py [--fault 10] [--clients 4] [--scenario stop|stall|both]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import app_env, free_port, gunicorn_command, private_postgres, running, wait_for  # noqa: E402

SEED = """
from accounts.models import Role, User
from accounts.services import api_key_create
from agents.models import Orchestra
user, _ = User.objects.get_or_create(username="outage")
user.roles.add(Role.objects.get(name="super_admin"))
_, raw = api_key_create(owner=user, name="outage bench")
orchestra, _ = Orchestra.objects.get_or_create(name="outage")
print(raw, orchestra.pk)
"""


@dataclass
class Answer:
    started: float
    finished: float
    status: int  # 0: no HTTP answer (connection error or client timeout)
    code: str
    key: str
    outcome_unknown: bool = False


@dataclass
class Load:
    port: int
    api_key: str
    orchestra: int
    answers: list[Answer] = field(default_factory=list)
    probes: list[tuple[str, float, float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _request(self, method: str, path: str, body: dict | None, timeout: float) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Connection": "close", "Authorization": f"Bearer {self.api_key}"}
            payload = None
            if body is not None:
                payload = json.dumps(body)
                headers["Content-Type"] = "application/json"
            conn.request(method, path, payload, headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = {}
            return response.status, data if isinstance(data, dict) else {}
        except (OSError, http.client.HTTPException):
            return 0, {}
        finally:
            conn.close()

    def client(self) -> None:
        while not self.stop.is_set():
            key = uuid.uuid4().hex
            started = time.monotonic()
            body = {"kind": "bench.outage", "orchestra": self.orchestra, "idempotency_key": key}
            status, data = self._request("POST", "/api/v1/tasks/", body, timeout=60)
            error = data.get("error") or {}
            details = error.get("details") or {}
            self.answers.append(
                Answer(
                    started,
                    time.monotonic(),
                    status,
                    error.get("code", ""),
                    key,
                    outcome_unknown=isinstance(details, dict) and details.get("outcome") == "unknown",
                )
            )
            if status == 0:
                time.sleep(0.05)

    def prober(self, path: str) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            status, _ = self._request("GET", path, None, timeout=60)
            self.probes.append((path, started, time.monotonic(), status))
            time.sleep(0.5)


def _summary(answers: list[Answer]) -> dict:
    counts = Counter(f"{a.status} {a.code}".strip() if a.status else "no answer" for a in answers)
    slowest = max((a.finished - a.started for a in answers), default=0.0)
    return {"answers": dict(sorted(counts.items())), "slowest_s": round(slowest, 2)}


def scenario(name: str, fault: float, clients: int, tmp: Path) -> dict:
    with private_postgres() as cluster:
        url = cluster.createdb("symphony_outage")
        env = app_env(tmp / name, DATABASE_URL=url, LOG_LEVEL="WARNING", SYMPHONY_RATELIMIT_ENABLED="false")
        env["WEB_CONCURRENCY"] = "2"
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=env, check=True, capture_output=True
        )
        api_key, orchestra = seeded.stdout.decode().split()[-2:]
        port = free_port()
        with running(gunicorn_command(port, workers=2), env=env, log=tmp / f"{name}-gunicorn.log"):
            wait_for(f"http://127.0.0.1:{port}/health/ready", timeout=30)
            load = Load(port, api_key, int(orchestra))
            threads = [threading.Thread(target=load.client, daemon=True) for _ in range(clients)]
            threads += [
                threading.Thread(target=load.prober, args=(path,), daemon=True)
                for path in ("/health/live", "/health/ready")
            ]
            for thread in threads:
                thread.start()
            time.sleep(3)
            fault_started = time.monotonic()
            cluster.stop() if name == "stop" else cluster.freeze()
            time.sleep(fault)
            fault_ended = time.monotonic()
            cluster.start() if name == "stop" else cluster.thaw()
            time.sleep(8)
            load.stop.set()
            for thread in threads:
                thread.join(timeout=90)
        keys = cluster.psql("SELECT idempotency_key FROM agents_task", dbname="symphony_outage").split()

    existing = set(keys)
    during = [a for a in load.answers if fault_started <= a.finished < fault_ended]
    after = [a for a in load.answers if a.finished >= fault_ended]
    first_201 = min((a.finished for a in after if a.status == 201), default=None)
    before = [a for a in load.answers if a.finished < fault_started]
    lost = [a for a in load.answers if a.status == 201 and a.key not in existing]
    behind_5xx = [a for a in load.answers if a.status >= 500 and a.key in existing]
    unknown = [a for a in behind_5xx if a.outcome_unknown]
    live_during = [
        (end - start, status)
        for path, start, end, status in load.probes
        if path == "/health/live" and fault_started <= end < fault_ended
    ]
    ready_during = Counter(
        s for path, start, end, s in load.probes if path == "/health/ready" and fault_started <= end < fault_ended
    )
    return {
        "scenario": name,
        "fault_seconds": fault,
        "before": _summary(before),
        "during": _summary(during),
        "after": _summary(after),
        "first_201_after_recovery_s": round(first_201 - fault_ended, 2) if first_201 else None,
        "live_during": {
            "answers": dict(Counter(s for _, s in live_during)),
            "slowest_s": round(max((d for d, _ in live_during), default=0.0), 2),
        },
        "ready_during": dict(ready_during),
        "acknowledged_but_missing": len(lost),
        "exists_behind_5xx": len(behind_5xx),
        "of_which_said_outcome_unknown": len(unknown),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fault", type=float, default=10.0, help="seconds the database is stopped or stalled")
    parser.add_argument("--clients", type=int, default=4, help="concurrent submitting clients")
    parser.add_argument("--scenario", choices=["stop", "stall", "both"], default="both")
    args = parser.parse_args()
    names = ["stop", "stall"] if args.scenario == "both" else [args.scenario]
    with tempfile.TemporaryDirectory(prefix="symphony-outage-") as tmp:
        for name in names:
            print(json.dumps(scenario(name, args.fault, args.clients, Path(tmp))), flush=True)
        if os.environ.get("BENCH_KEEP_LOGS"):
            for log in Path(tmp).glob("*.log"):
                print(f"--- {log.name}\n{log.read_text()[-4000:]}")


if __name__ == "__main__":
    main()
