"""Claims that wait for work: submit-to-claim latency, and what an idle fleet of waiting agents costs.

    python bench/bench_claim_wait.py [--agents 32] [--tasks 200] [--idle-seconds 45] [--port-base 19250]
    python bench/run.py --only claim_wait      # the same, and its section of docs/BENCHMARKS.md rewritten

Starts a private PostgreSQL cluster (``tests.servers.PostgresCluster``, on ``--port-base``, with
``pg_stat_statements`` preloaded so every statement is counted, utility ones such as BEGIN/COMMIT
included; fsync and synchronous_commit on, as in production), then gunicorn (2 sync workers: the API)
and one uvicorn process (symphony.asgi: the waiting claims), as ``make run`` does.

1. ``--agents`` agents each loop on ``POST /api/v1/agent/claim/`` with ``wait_seconds=20`` on the ASGI
   process, one thread each; the benchmark waits until the process holds all of them
   (``symphony_claims_waiting``).
2. Idle fleet: for ``--idle-seconds`` nothing is submitted; the statements the database ran in that time
   (``pg_stat_statements``, the benchmark's own queries excluded), per agent per second (target < 1).
3. Latency: ``--tasks`` tasks are submitted one by one through gunicorn (``POST /api/v1/tasks/``) every
   50 ms; for each, from just before the POST is sent until a waiting agent's claim answer holding it
   has arrived, p50/p95/p99 (targets p50 < 25 ms, p99 < 100 ms). A claimed task stays running (its
   lease is long): the agent goes straight back to waiting.

4. The floor: with the fleet gone, 50 plain claims (no wait) of a task already pending, one agent, on
   the same process: what one claim costs here, which a woken claim cannot beat.

Prints one JSON object last (what bench/run.py reads).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from tests.servers import PostgresCluster, postgres_bin_dir  # noqa: E402

WAIT = 20


def server_env(tmp: Path, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    (tmp / "prometheus").mkdir(exist_ok=True)
    env.update({
        "DATABASE_URL": database_url, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "SYMPHONY_VAR_DIR": str(tmp / "var"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"), "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json",
        "OTEL_SDK_DISABLED": "true", "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "SYMPHONY_RATELIMIT_DEFAULT": "1000000000/1s",
    })  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


SEED = """
import json, secrets
from accounts.models import Role, User
from accounts.services import api_key_create
from agents import services
from agents.models import Orchestra
owner = User.objects.create(username="bench-owner", is_superuser=True)
submitter = User.objects.create(username="bench-submitter")
submitter.roles.set(Role.objects.filter(name="operator"))
_, submit_key = api_key_create(owner=submitter, name="bench-submit")
orchestra = Orchestra.objects.create(name="bench-wait", state=Orchestra.State.RUNNING)
keys = []
for n in range({agents}):
    agent, key = services.agent_create(owner=owner, name=f"bench-wait-{{n}}", capabilities=["echo"])
    orchestra.agents.add(agent)
    keys.append(key)
print(json.dumps({{"submit_key": submit_key, "agent_keys": keys, "orchestra": orchestra.pk}}))
"""


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout


def start(tmp: Path, env: dict[str, str], name: str, command: list[str]) -> subprocess.Popen:
    with open(tmp / f"{name}.log", "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while harness.status_of(url, timeout=2) != 200:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{url} did not answer 200")
        time.sleep(0.1)


def waiting(base: str) -> int:
    import requests

    text = requests.get(f"{base}/metrics", timeout=10).text
    match = re.search(r"^symphony_claims_waiting ([0-9.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


class Fleet:
    """One thread per agent, each claiming with ``wait_seconds`` in a loop; records when each task arrives."""

    def __init__(self, base: str, keys: list[str]) -> None:
        self.arrived: dict[int, float] = {}
        self.errors: list[str] = []
        self.claims = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(base, key), daemon=True) for key in keys]
        for thread in self._threads:
            thread.start()

    def _run(self, base: str, key: str) -> None:
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        while not self._stop.is_set():
            try:
                r = session.post(f"{base}/api/v1/agent/claim/", json={"wait_seconds": WAIT, "lease_seconds": 3600},
                                 timeout=WAIT + 30)  # fmt: skip
            except requests.RequestException as exc:
                self.errors.append(exc.__class__.__name__)
                time.sleep(0.5)
                continue
            now = time.monotonic()
            if r.status_code != 200:
                self.errors.append(str(r.status_code))
                time.sleep(0.5)
                continue
            with self._lock:
                self.claims += 1
                for task in r.json()["tasks"]:
                    self.arrived[task["id"]] = now

    def stop(self) -> None:
        self._stop.set()


def statements(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = current_database() AND s.query NOT ILIKE '%pg_stat_statements%'"
        ).fetchone()
    return int(row[0])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--idle-seconds", type=int, default=45)
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_CLAIM_WAIT_PORT_BASE", "19250")))
    args = parser.parse_args()
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        print(json.dumps({"available": False, "note": "needs PostgreSQL's initdb and pg_ctl"}))
        return 0
    import requests

    cluster = PostgresCluster(bin_dir, args.port_base).init()
    with open(cluster.data / "postgresql.conf", "a") as conf:
        conf.write("fsync = on\nsynchronous_commit = on\nmax_connections = 100\n")
        conf.write("shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_utility = on\n")
    cluster.start()
    processes: list[subprocess.Popen] = []
    fleet = None
    try:
        admin = f"postgres://postgres@127.0.0.1:{args.port_base}/postgres"
        subprocess.run(["psql", admin, "-qc", "CREATE DATABASE bench"], check=True, capture_output=True)
        dsn = f"postgres://postgres@127.0.0.1:{args.port_base}/bench"
        subprocess.run(["psql", dsn, "-qc", "CREATE EXTENSION pg_stat_statements"], check=True, capture_output=True)
        tmp = Path(tempfile.mkdtemp(prefix="symphony-bench-wait-"))
        env = server_env(tmp, dsn)
        manage(env, "migrate", "--noinput")
        seed = json.loads(manage(env, "shell", "-c", SEED.format(agents=args.agents)).strip().splitlines()[-1])
        api_port, asgi_port = args.port_base + 1, args.port_base + 2
        gunicorn = start(tmp, env, "gunicorn", [*harness.gunicorn_command(api_port, workers=2, worker_class="sync",
                                                                          threads=1)])  # fmt: skip
        processes.append(gunicorn)
        asgi_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        uvicorn = start(tmp, asgi_env, "uvicorn", [sys.executable, "-m", "uvicorn", "symphony.asgi:application",
                                                   "--host", "127.0.0.1", "--port", str(asgi_port),
                                                   "--no-access-log"])  # fmt: skip
        processes.append(uvicorn)
        api, asgi = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{asgi_port}"
        wait_ready(f"{api}/health/live", gunicorn)
        wait_ready(f"{asgi}/health/live", uvicorn)

        fleet = Fleet(asgi, seed["agent_keys"])
        deadline = time.monotonic() + 60
        while waiting(asgi) < args.agents:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {waiting(asgi)} of {args.agents} claims waiting; errors {fleet.errors[:5]}")
            time.sleep(0.2)
        time.sleep(1)

        # 2. The idle fleet.
        before, started = statements(dsn), time.monotonic()
        cpu_before = harness.cpu_seconds([uvicorn.pid])
        time.sleep(args.idle_seconds)
        idle_statements = statements(dsn) - before
        idle_seconds = time.monotonic() - started
        idle_cpu = harness.cpu_seconds([uvicorn.pid]) - cpu_before

        # 3. Submit-to-claim latency.
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {seed['submit_key']}"
        sent: dict[int, float] = {}
        answered: dict[int, float] = {}
        for n in range(args.tasks):
            t0 = time.monotonic()
            r = session.post(f"{api}/api/v1/tasks/", json={"orchestra": seed["orchestra"], "kind": "echo",
                                                           "input": {"n": n}, "required_capabilities": ["echo"]},
                             timeout=10)  # fmt: skip
            if r.status_code != 201:
                raise RuntimeError(f"submission answered {r.status_code}: {r.text[:200]}")
            task_id = r.json()["id"]
            sent[task_id], answered[task_id] = t0, time.monotonic()
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(task_id in fleet.arrived for task_id in sent):
            time.sleep(0.01)
        missing = [task_id for task_id in sent if task_id not in fleet.arrived]
        fleet.stop()

        # 4. The floor: a plain claim's round trip on the same process, a task already pending (no wait).
        floor = []
        plain = requests.Session()
        plain.headers["Authorization"] = f"Bearer {seed['agent_keys'][0]}"
        while waiting(asgi):  # the fleet's last held claims end with their wait
            time.sleep(0.5)
        for n in range(min(args.tasks, 50)):
            r = session.post(f"{api}/api/v1/tasks/", json={"orchestra": seed["orchestra"], "kind": "echo",
                                                           "input": {"n": n}, "required_capabilities": ["echo"]},
                             timeout=10)  # fmt: skip
            t0 = time.monotonic()
            claimed = plain.post(f"{asgi}/api/v1/agent/claim/", json={"lease_seconds": 3600}, timeout=10).json()
            floor.append((time.monotonic() - t0) * 1000)
            if not claimed["tasks"]:
                raise RuntimeError("the floor's claim found nothing")
        latencies = [(fleet.arrived[t] - sent[t]) * 1000 for t in sent if t in fleet.arrived]
        after_commit = [(fleet.arrived[t] - answered[t]) * 1000 for t in sent if t in fleet.arrived]
        result = {
            "available": True,
            "agents": args.agents,
            "wait_seconds": WAIT,
            "idle_seconds": round(idle_seconds, 1),
            "idle_statements": idle_statements,
            "statements_per_agent_per_second": round(idle_statements / args.agents / idle_seconds, 3),
            "idle_asgi_cpu_ms_per_second": round(idle_cpu * 1000 / idle_seconds, 2),
            "counted_with": "pg_stat_statements (utility statements included), private PostgreSQL "
            + subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True).stdout.strip(),
            "tasks": args.tasks,
            "missing": len(missing),
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "after_commit_p50_ms": round(statistics.median(after_commit), 1),
            "after_commit_p99_ms": round(percentile(after_commit, 0.99), 1),
            "plain_claim_p50_ms": round(statistics.median(floor), 1),
            "plain_claim_p99_ms": round(percentile(floor, 0.99), 1),
            "errors": fleet.errors[:10],
        }
    finally:
        if fleet is not None:
            fleet.stop()
        for process in processes:
            harness.stop(process)
        cluster.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
