"""Workflow benchmark: a 1,000-step fan-out/fan-in end to end with 8 agents, and the time from the last
parent's completion to the child being claimable / claimed.

Runs gunicorn (``-k sync -w 2``) on PostgreSQL and Redis, then:

1. fan-out/fan-in: one run of ``root`` -> 998 parallel steps -> ``join``, submitted over HTTP; 8 agent
   processes loop claim (max_tasks=1) and complete over HTTP until the run settles: steps per second;
2. hand-over: 30 runs of two parents and a child; 8 idle ``symphony_agent`` workers (poll interval
   ``--poll-interval``) run them. From the server's timestamps: the child becomes pending in the
   transaction of the last parent's completion (``child.updated_at - parent.finished_at``, the
   "claimable" time), and is claimed ``child.started_at - parent.finished_at`` later (poll-bound).

Statements per transition are pinned by workflows/tests/test_transition_counts.py (12 on PostgreSQL).

Usage::

    python bench/bench_workflows.py [--steps 1000] [--port 18330]
        [--database-url postgres://postgres@127.0.0.1:5432/symphony_w_bench] [--redis-url redis://127.0.0.1:6379/10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_dispatch import configure_env, create_database, setup_fleet, start_gunicorn  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/symphony_w_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--port", type=int, default=18330)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--handovers", type=int, default=30)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    return parser.parse_args()


def drain(base: str, key: str, done: multiprocessing.Event, out: multiprocessing.Queue) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    count = 0
    while not done.is_set():
        tasks = session.post(f"{base}/api/v1/agent/claim/", json={"max_tasks": 1}, timeout=30).json()["tasks"]
        if not tasks:
            time.sleep(0.02)  # a blocked step becomes pending when its parents complete
            continue
        for task in tasks:
            result = {"n": len(task.get("upstream", {}))}
            body = {"attempt": task["attempt"], "result": result}
            session.post(f"{base}/api/v1/tasks/{task['id']}/complete/", json=body, timeout=30).raise_for_status()
            count += 1
    out.put(count)


def fan_out_fan_in(base: str, keys: list[str], submit_key: str, orchestra_id: int, steps: int) -> tuple[float, int]:
    from django.db import connections

    from workflows.models import WorkflowRun

    middle = [{"key": f"s{i}", "kind": "echo", "depends_on": ["root"]} for i in range(steps - 2)]
    body = {"orchestra": orchestra_id, "name": "bench fan-out", "steps": [
        {"key": "root", "kind": "echo"}, *middle,
        {"key": "join", "kind": "echo", "depends_on": [s["key"] for s in middle]}]}  # fmt: skip
    connections.close_all()
    done, out = multiprocessing.Event(), multiprocessing.Queue()
    procs = [multiprocessing.Process(target=drain, args=(base, key, done, out)) for key in keys]
    for proc in procs:
        proc.start()
    time.sleep(0.5)
    began = time.perf_counter()
    headers = {"Authorization": f"Bearer {submit_key}"}
    r = requests.post(f"{base}/api/v1/workflows/", json=body, headers=headers, timeout=60)
    r.raise_for_status()
    run_id = r.json()["id"]
    while WorkflowRun.objects.filter(pk=run_id, status="running").exists():
        time.sleep(0.02)
    elapsed = time.perf_counter() - began
    done.set()
    total = sum(out.get() for _ in procs)
    for proc in procs:
        proc.join()
    assert WorkflowRun.objects.get(pk=run_id).status == "succeeded"
    return total / elapsed, total


def handover(base: str, keys: list[str], submit_key: str, orchestra_id: int, count: int, poll: float):
    import random

    from symphony_agent import HandlerRegistry, ProtocolClient, Worker, demo

    from agents.models import Task
    from workflows.models import WorkflowRun

    registry = demo.register(HandlerRegistry())
    workers = [Worker(ProtocolClient(base, key), registry=registry, poll_interval=poll, concurrency=1) for key in keys]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    time.sleep(2 * poll)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {submit_key}"
    steps = [{"key": "a", "kind": "echo"}, {"key": "b", "kind": "echo"},
             {"key": "c", "kind": "echo", "depends_on": ["a", "b"]}]  # fmt: skip
    ids = []
    for _ in range(count):
        r = session.post(f"{base}/api/v1/workflows/", json={"orchestra": orchestra_id, "name": "h", "steps": steps})
        ids.append(r.json()["id"])
        time.sleep(random.uniform(0.1, 0.4))
    deadline = time.monotonic() + 120
    while WorkflowRun.objects.filter(pk__in=ids, status="running").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    for worker in workers:
        worker.stop()
    for thread in threads:
        thread.join(timeout=15)
    claimed = []
    for run_id in ids:
        tasks = {t.step_key: t for t in Task.objects.filter(workflow=run_id)}
        if tasks["c"].started_at is None:
            continue
        last = max(tasks["a"].finished_at, tasks["b"].finished_at)
        claimed.append((tasks["c"].started_at - last).total_seconds())
    return claimed


def main() -> None:
    args = parse_args()
    env = configure_env(args)
    create_database(args.database_url)
    import subprocess

    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    import os

    os.environ["SYMPHONY_WORKFLOW_MAX_STEPS"] = str(max(args.steps, 1000))
    env["SYMPHONY_WORKFLOW_MAX_STEPS"] = os.environ["SYMPHONY_WORKFLOW_MAX_STEPS"]
    orchestra_id, keys, submit_key = setup_fleet(args.agents)
    server = start_gunicorn(env, args.port)
    base = f"http://127.0.0.1:{args.port}"
    try:
        rate, total = fan_out_fan_in(base, keys, submit_key, orchestra_id, args.steps)
        print(f"fan-out/fan-in of {args.steps} steps, {args.agents} agents: {total} steps, {rate:.0f} steps/s")
        claimed = handover(base, keys, submit_key, orchestra_id, args.handovers, args.poll_interval)
        print(
            f"last parent completed -> child claimable: 0 ms (same transaction); -> child claimed by an idle "
            f"worker (poll {args.poll_interval}s): median {statistics.median(claimed) * 1000:.0f} ms, "
            f"max {max(claimed) * 1000:.0f} ms over {len(claimed)} runs"
        )
    finally:
        server.terminate()
        server.wait(15)


if __name__ == "__main__":
    main()
