"""Live streams under load: API p99 with and without 200 open streams, and event-to-subscriber latency.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/symphony_e REDIS_URL=redis://127.0.0.1:6379/13 \\
        python bench/bench_streams.py [--streams 200] [--seconds 10] [--events 200]

Starts gunicorn (2 sync workers, the API) and one uvicorn process (symphony.asgi, the streams) on the
given database, as `make run` does, and seeds a user key, one agent and ``--streams`` running tasks.

1. wrk (2 threads, 16 connections) loads ``GET /api/v1/me/`` for ``--seconds``: the baseline p99.
2. ``--streams`` SSE streams are opened on the stream process, one per task, each read by a thread here.
3. wrk loads the API again, same parameters, with the streams open: the p99 with streams (target: within
   1.5x of the baseline).
4. ``--events`` events are posted one by one through the API (the agent's key), each to another task,
   every 20 ms: the latency is from just before the POST is sent until the thread reading that task's
   stream has the event (the POST's own time included), p50/p95 (target p95 < 100 ms). Once with the
   API idle, once while wrk loads it.

Prints one JSON object last (what bench/run.py reads). Empties the target database's tasks first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
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
from bench.run import LUA  # noqa: E402


def server_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    (tmp / "prometheus").mkdir(exist_ok=True)
    env.update({
        "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SYMPHONY_VAR_DIR": str(tmp / "var"), "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", "OTEL_SDK_DISABLED": "true",
        "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "SYMPHONY_RATELIMIT_DEFAULT": "1000000000/1s",  # wrk's flood is never refused
    })  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def seed(streams: int) -> dict:
    """A viewer's key, one agent holding ``streams`` running tasks (long leases); returns keys and tasks."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    django.setup()
    from django.core.management import call_command

    from accounts.models import Role, User
    from accounts.services import api_key_create
    from agents import services
    from agents.models import Agent, Orchestra, Task

    call_command("migrate", "--noinput", verbosity=0)
    Task.objects.all().delete()
    Agent.objects.filter(name__startswith="bench-streams").delete()
    owner, _ = User.objects.get_or_create(username="bench-streams-owner", defaults={"is_superuser": True})
    viewer, _ = User.objects.get_or_create(username="bench-streams-viewer")
    viewer.roles.set(Role.objects.filter(name="viewer"))
    _, user_key = api_key_create(owner=viewer, name=f"bench-streams-{secrets.token_hex(4)}")
    agent, agent_key = services.agent_create(owner=owner, name=f"bench-streams-{secrets.token_hex(4)}", capabilities=[])
    orchestra, _ = Orchestra.objects.get_or_create(name="bench-streams", defaults={"state": Orchestra.State.RUNNING})
    orchestra.agents.add(agent)
    for n in range(streams):
        services.task_submit(submitter=owner, kind="bench", orchestra=orchestra, input={"n": n})
    claimed = []
    while len(claimed) < streams:
        batch = services.task_claim(agent=agent, max_tasks=min(100, streams - len(claimed)), lease_seconds=3600)
        if not batch:
            break
        claimed += batch
    from django.db import connections

    connections.close_all()
    return {"user_key": user_key, "agent_key": agent_key, "tasks": [(t.pk, t.last_attempt) for t in claimed]}


def start(tmp: Path, env: dict[str, str], name: str, command: list[str]) -> subprocess.Popen:
    with open(tmp / f"{name}.log", "wb") as out:
        return subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while harness.status_of(url, timeout=2) != 200:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{url} did not answer 200; see {log}")
        time.sleep(0.1)


def wrk(url: str, key: str, seconds: int) -> dict:
    env = dict(os.environ, WRK_METHOD="GET", WRK_BODY="", WRK_KEYS=key)
    command = ["wrk", "-t", "2", "-c", "16", "-d", f"{seconds}s", "--timeout", "5s", "-s", str(LUA), url]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    return json.loads(line.removeprefix("WRK_JSON "))


class Subscribers:
    """One thread per stream, recording when each ``{"bench": n}`` event arrives."""

    def __init__(self, base: str, key: str, task_ids: list[int]) -> None:
        import requests

        self.seen: dict[int, float] = {}
        self.opened = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._sessions = []
        self._responses = []
        self._threads = []
        for task_id in task_ids:
            session = requests.Session()
            self._sessions.append(session)
            thread = threading.Thread(target=self._read, args=(session, base, key, task_id), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read(self, session, base: str, key: str, task_id: int) -> None:
        try:
            url = f"{base}/api/v1/tasks/{task_id}/stream/"
            with session.get(url, headers={"Authorization": f"Bearer {key}"}, stream=True, timeout=600) as response:
                with self._lock:
                    self._responses.append(response)
                if response.status_code != 200:
                    self.errors.append(f"{task_id}: {response.status_code}")
                    return
                for line in response.iter_lines():
                    if line.startswith(b"event: status"):
                        with self._lock:
                            self.opened += 1
                    elif line.startswith(b"data: ") and b'"bench":' in line:
                        now = time.monotonic()
                        n = int(line.split(b'"bench":', 1)[1].split(b"}", 1)[0])
                        with self._lock:
                            self.seen.setdefault(n, now)
        except Exception as exc:  # noqa: BLE001 - closed at the end of the benchmark
            if not isinstance(exc, (OSError, ValueError)) and "closed" not in str(exc).lower():
                self.errors.append(f"{task_id}: {exc.__class__.__name__}")

    def close(self) -> None:
        """Hang up every stream (the socket itself, so the server sees the disconnect at once)."""
        with self._lock:
            responses = list(self._responses)
        for response in responses:
            with contextlib.suppress(Exception):
                response.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                response.close()
        for session in self._sessions:
            session.close()
        for thread in self._threads:
            thread.join(timeout=5)


def post_events(api: str, agent_key: str, tasks: list[tuple[int, int]], subs: Subscribers, first: int,
                count: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """Post ``count`` events (one every 20 ms); for each, the ms until its subscriber had it, counted from
    before the POST was sent and from when its answer (the commit) came back."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {agent_key}"
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    for i in range(count):
        n = first + i
        task_id, attempt = tasks[n % len(tasks)]
        sent[n] = time.monotonic()
        r = session.post(f"{api}/api/v1/tasks/{task_id}/events/",
                         json={"attempt": attempt, "type": "progress", "data": {"bench": n}}, timeout=10)  # fmt: skip
        answered[n] = time.monotonic()
        if r.status_code != 201:
            raise RuntimeError(f"event POST answered {r.status_code}: {r.text[:200]}")
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(n in subs.seen for n in sent):
        time.sleep(0.01)
    missing = [n for n in sent if n not in subs.seen]
    if missing:
        raise RuntimeError(f"{len(missing)} events never reached their subscriber")
    return [(subs.seen[n] - sent[n]) * 1000 for n in sent], [(subs.seen[n] - answered[n]) * 1000 for n in sent]


def open_streams(base: str, key: str, tasks: list[tuple[int, int]]) -> Subscribers:
    subs = Subscribers(base, key, [task_id for task_id, _ in tasks])
    deadline = time.monotonic() + 60
    while subs.opened < len(tasks) and time.monotonic() < deadline:
        time.sleep(0.1)
    return subs


def summary(latencies: list[float]) -> dict:
    q = statistics.quantiles(latencies, n=100)
    return {"count": len(latencies), "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1),
            "max_ms": round(max(latencies), 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=8, help="per wrk block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating without/with blocks")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--path", default="/api/v1/me/")
    parser.add_argument("--port", type=int, default=18640, help="gunicorn here, uvicorn on the next port")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("bench_streams: set DATABASE_URL to a PostgreSQL database of your own")
    data = seed(args.streams)
    tasks = data["tasks"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    env = server_env(tmp)
    stream_port = args.port + 1
    # Both servers run from the temporary folder (the code is found through PYTHONPATH).
    env["PYTHONPATH"] = str(ROOT)
    uvicorn = start(
        tmp,
        env,
        "uvicorn",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "symphony.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(stream_port),
            "--no-access-log",
        ],
    )
    command = harness.gunicorn_command(args.port, workers=2, worker_class="sync", threads=1)
    gunicorn = start(tmp, env, "gunicorn", command)
    result: dict = {"streams": args.streams, "path": args.path, "seconds": args.seconds, "tasks": len(tasks)}
    try:
        api = harness.Server(process=gunicorn, port=args.port, started_at=time.monotonic())
        wait_ready(api.base + "/health/ready", gunicorn, tmp / "gunicorn.log")
        stream_base = f"http://127.0.0.1:{stream_port}"
        wait_ready(stream_base + "/health/live", uvicorn, tmp / "uvicorn.log")
        url = api.base + args.path
        wrk(url, data["user_key"], 2)  # warm-up
        # Alternating blocks, because the machine is shared: one pair alone may catch a neighbour's burst.
        blocks: dict[str, list[dict]] = {"without_streams": [], "with_streams": []}
        cpu_streams = {"without_streams": 0.0, "with_streams": 0.0}
        subs = None
        for round_no in range(args.rounds):
            for condition in ("without_streams", "with_streams"):
                if condition == "with_streams":
                    subs = open_streams(stream_base, data["user_key"], tasks)
                    result["streams_open"] = subs.opened
                before = harness.cpu_seconds([uvicorn.pid])
                blocks[condition].append(wrk(url, data["user_key"], args.seconds))
                cpu_streams[condition] += harness.cpu_seconds([uvicorn.pid]) - before
                if condition == "with_streams" and round_no < args.rounds - 1:
                    subs.close()
        for condition, runs in blocks.items():
            result[condition] = {
                "p99_ms_blocks": [run["p99_ms"] for run in runs],
                "p99_ms": statistics.median(run["p99_ms"] for run in runs),
                "p50_ms": statistics.median(run["p50_ms"] for run in runs),
                "rps": statistics.median(run["rps"] for run in runs),
                "stream_process_cpu_s": round(cpu_streams[condition], 2),
            }
        result["p99_ratio"] = round(result["with_streams"]["p99_ms"] / result["without_streams"]["p99_ms"], 2)
        from_post, from_commit = post_events(api.base, data["agent_key"], tasks, subs, 0, args.events)
        result["event_latency_idle"] = summary(from_post)
        result["event_latency_idle_from_commit"] = summary(from_commit)
        loaded: dict = {}
        load = threading.Thread(target=lambda: loaded.update(wrk(url, data["user_key"], args.seconds + 5)))
        load.start()
        time.sleep(1)
        from_post, from_commit = post_events(api.base, data["agent_key"], tasks, subs, args.events, args.events)
        load.join()
        result["event_latency_under_load"] = summary(from_post)
        result["event_latency_under_load_from_commit"] = summary(from_commit)
        result["with_streams_and_events"] = loaded
        result["stream_errors"] = subs.errors[:5]
        result["stream_process_rss_mib"] = round(harness.rss_mib(uvicorn.pid), 1)
        subs.close()
    finally:
        harness.stop(uvicorn)
        harness.stop(gunicorn)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
