"""Dispatch benchmark: end-to-end HTTP throughput of claim + complete, and submission-to-claim latency.

Runs gunicorn (``-k sync -w 2``) on PostgreSQL and Redis, then:

1. throughput: with the queue pre-filled, C agent processes (8, then 32) loop ``claim`` (max_tasks=1)
   and ``complete`` over HTTP until the queue is empty: tasks claimed-and-completed per second;
2. latency: 8 real ``symphony_agent`` workers poll while idle (default 1 s poll interval); tasks are
   submitted over HTTP one at a time at random intervals; the time from submission to claim is read
   from the server's own timestamps (``claimed_at - created_at``), so client clocks do not matter.

Usage (the defaults use this helper's database and port range)::

    python bench/bench_dispatch.py [--tasks 2000] [--port 18310]
        [--database-url postgres://postgres@127.0.0.1:5432/symphony_agents_bench]
        [--redis-url redis://127.0.0.1:6379/3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/symphony_agents_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--port", type=int, default=18310)
    parser.add_argument("--tasks", type=int, default=2000, help="Tasks per throughput run.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--max-tasks", type=int, default=1, help="Tasks asked per claim in the throughput runs.")
    parser.add_argument("--latency-tasks", type=int, default=60)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    return parser.parse_args()


def configure_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "symphony.settings",
    }
    os.environ.update(env)
    return env


def create_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_fleet(agents: int) -> tuple[int, list[str], str]:
    """A fresh running orchestra with ``agents`` agents; return (orchestra id, agent keys, submitter key)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from accounts.models import Role
    from accounts.services import api_key_create
    from agents import services
    from agents.models import Agent, Orchestra, Task

    Task.objects.filter(orchestra__name="bench").delete()
    for agent in Agent.objects.filter(name__startswith="bench-"):
        services.agent_delete(agent=agent, actor=None)
    Orchestra.objects.filter(name="bench").delete()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    user.roles.add(*Role.objects.filter(name="super_admin"))
    orchestra = services.orchestra_create(actor=user, name="bench")
    services.orchestra_transition(orchestra=orchestra, actor=user, action="start")
    keys = []
    for i in range(agents):
        agent, raw = services.agent_create(owner=user, name=f"bench-{i}", capabilities=["echo"])
        orchestra.agents.add(agent)
        keys.append(raw)
    _, submit_key = api_key_create(owner=user, name=f"bench-submit-{secrets.token_hex(4)}")
    return orchestra.pk, keys, submit_key


def fill_queue(orchestra_id: int, count: int) -> None:
    from django.contrib.auth import get_user_model

    from agents.models import Task

    user = get_user_model().objects.get(username="bench")
    Task.objects.bulk_create(
        [Task(orchestra_id=orchestra_id, kind="echo", input={"n": n}, submitter=user) for n in range(count)],
        batch_size=1000,
    )


def start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "symphony.wsgi", "-k", "sync", "-w", "2", "--worker-tmp-dir",
           "/dev/shm", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(cmd, cwd=ROOT, env=env)
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit("gunicorn did not start")


def drain(base: str, key: str, max_tasks: int, start: multiprocessing.Event, out: multiprocessing.Queue) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    done = 0
    start.wait()
    while True:
        tasks = session.post(f"{base}/api/v1/agent/claim/", json={"max_tasks": max_tasks}, timeout=30).json()["tasks"]
        if not tasks:
            break
        for task in tasks:
            r = session.post(
                f"{base}/api/v1/tasks/{task['id']}/complete/",
                json={"attempt": task["attempt"], "result": task["input"]},
                timeout=30,
            )
            r.raise_for_status()
            done += 1
    out.put(done)


def throughput(base: str, keys: list[str], orchestra_id: int, tasks: int, max_tasks: int) -> tuple[float, int]:
    fill_queue(orchestra_id, tasks)
    from django.db import connections

    connections.close_all()  # no connection shared with forked children
    start, out = multiprocessing.Event(), multiprocessing.Queue()
    procs = [multiprocessing.Process(target=drain, args=(base, key, max_tasks, start, out)) for key in keys]
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # let every process import and connect before the clock starts
    began = time.perf_counter()
    start.set()
    total = sum(out.get() for _ in procs)
    elapsed = time.perf_counter() - began
    for proc in procs:
        proc.join()
    return total / elapsed, total


def latency(base: str, keys: list[str], submit_key: str, orchestra_id: int, count: int, poll: float) -> list[float]:
    import random

    from symphony_agent import HandlerRegistry, ProtocolClient, Worker, demo

    from agents.models import Task

    registry = demo.register(HandlerRegistry())  # the tasks are echo tasks
    workers = [Worker(ProtocolClient(base, key), registry=registry, poll_interval=poll, concurrency=1) for key in keys]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    time.sleep(2 * poll)  # all idle and polling
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {submit_key}"
    ids = []
    for _ in range(count):
        r = session.post(f"{base}/api/v1/tasks/", json={"orchestra": orchestra_id, "kind": "echo", "input": {}})
        ids.append(r.json()["id"])
        time.sleep(random.uniform(0.1, 0.4))
    deadline = time.monotonic() + 60
    while Task.objects.filter(pk__in=ids, claimed_at__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    for worker in workers:
        worker.stop()
    for thread in threads:
        thread.join(timeout=15)
    rows = Task.objects.filter(pk__in=ids, started_at__isnull=False).values_list("created_at", "started_at")
    return [(started - created).total_seconds() for created, started in rows]


def main() -> None:
    args = parse_args()
    env = configure_env(args)
    create_database(args.database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    base = f"http://127.0.0.1:{args.port}"
    server = start_gunicorn(env, args.port)
    try:
        database = args.database_url.rsplit("/", 1)[1]
        print(f"gunicorn -k sync -w 2 on {base}; PostgreSQL {database}; Redis {args.redis_url}")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (figures scale with idle CPU)")
        for concurrency in args.concurrency:
            orchestra_id, keys, _ = setup_fleet(concurrency)
            rate, total = throughput(base, keys, orchestra_id, args.tasks, args.max_tasks)
            print(
                f"throughput: {concurrency:>2} agents, max_tasks={args.max_tasks}: {total} tasks claimed+completed,"
                f" {rate:7.1f} tasks/s"
            )
        if not args.latency_tasks:
            return
        orchestra_id, keys, submit_key = setup_fleet(8)
        waits = latency(base, keys, submit_key, orchestra_id, args.latency_tasks, args.poll_interval)
        waits.sort()
        print(
            f"latency: 8 idle agents polling every {args.poll_interval:.1f}s, {len(waits)} tasks: submission->claim"
            f" median {statistics.median(waits) * 1000:.0f} ms, p90 {waits[int(len(waits) * 0.9)] * 1000:.0f} ms,"
            f" max {waits[-1] * 1000:.0f} ms"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
