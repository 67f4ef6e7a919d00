#!/usr/bin/env python3
"""Several Symphony instances on one PostgreSQL and Redis, real workers killed and restarted: every
task completed exactly once, none lost, the audit chain verified. Prints one JSON line last.

Starts ``--instances`` gunicorn masters (each with its own port and workers), then ``--workers``
real ``symphony_agent`` processes (the worker client, ``--demo`` handlers, short leases) spread
round-robin across the instances. While they drain ``--tasks`` echo tasks, one worker at a time is
killed (SIGKILL: its leases expire and its tasks go back to the queue) and a new one started with
the same key, every ``--kill-every`` seconds. At the end it checks, in the database:

- every task succeeded, and exactly one of its attempts did (no task completed twice);
- exactly one ``task.completed`` audit event per task;
- ``manage.py audit_verify`` passes (the chain, sealed by all the instances, is whole).

    python bench/bench_instances.py [--tasks 10000] [--instances 3] [--workers 24]
        [--database-url postgres://postgres@127.0.0.1:5432/symphony_instances] [--redis-url redis://.../7]

The database is created for the run and dropped after it (``--keep-database`` keeps it). Exit
status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/symphony_instances")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--port-base", type=int, default=18650)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--gunicorn-workers", type=int, default=2, help="sync workers per instance")
    parser.add_argument("--workers", type=int, default=24, help="symphony_agent processes")
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between two kills (0: none)")
    parser.add_argument("--lease-seconds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--keep-redis", action="store_true", help="do not flush the Redis database first")
    parser.add_argument("--keep-database", action="store_true", help="leave the database for inspection")
    return parser.parse_args()


def environment(args: argparse.Namespace, tmp: Path) -> dict[str, str]:
    (tmp / "prometheus").mkdir()
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SYMPHONY_VAR_DIR": str(tmp / "var"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "OTEL_SDK_DISABLED": "true",
        "SYMPHONY_RATELIMIT_DEFAULT": "1000000000/1s",
        "DJANGO_SETTINGS_MODULE": "symphony.settings",
    }
    return env


def prepare(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """A fresh database with one orchestra of ``--workers`` agents and ``--tasks`` pending echo tasks."""
    server, name = args.database_url.rsplit("/", 1)
    subprocess.run(["psql", f"{server}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)
    subprocess.run(["psql", f"{server}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    if not args.keep_redis:
        subprocess.run(["redis-cli", "-u", args.redis_url, "flushdb"], check=True, capture_output=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run([sys.executable, "bench/seed.py"], cwd=ROOT, env=env | {"BENCH_AGENTS": str(args.workers)},
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    keys = json.loads(seeded.strip().splitlines()[-1])["agent_keys"]
    fill = (
        "from agents.models import Orchestra, Task; from django.contrib.auth import get_user_model;"
        "from django.db import connection;"
        "o = Orchestra.objects.get(name='bench'); u = get_user_model().objects.get(username='bench');"
        f"Task.objects.bulk_create([Task(kind='echo', input={{'n': i}}, orchestra=o, submitter=u)"
        f" for i in range({args.tasks})], batch_size=2000);"
        "connection.cursor().execute('ANALYZE agents_task')"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", fill], cwd=ROOT, env=env, check=True)
    return keys


def start_worker(url: str, key: str, args: argparse.Namespace, env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "symphony_agent", "--url", url, "--demo", "--poll-interval", "0.2",
               "--lease-seconds", str(args.lease_seconds), "--heartbeat-interval", "2",
               "--log-level", "WARNING"]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env | {"SYMPHONY_AGENT_KEY": key}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def remaining(env: dict[str, str]) -> int:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM agents_task WHERE status NOT IN ('succeeded', 'failed')").fetchone()[
            0
        ]


def check(env: dict[str, str], tasks: int) -> dict:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        result = {
            "succeeded": one("SELECT count(*) FROM agents_task WHERE status = 'succeeded'"),
            "failed": one("SELECT count(*) FROM agents_task WHERE status = 'failed'"),
            "attempts": one("SELECT count(*) FROM agents_taskattempt"),
            "expired_attempts": one("SELECT count(*) FROM agents_taskattempt WHERE outcome = 'expired'"),
            "tasks_with_two_successes": one(
                "SELECT count(*) FROM (SELECT task_id FROM agents_taskattempt WHERE outcome = 'succeeded'"
                " GROUP BY task_id HAVING count(*) > 1) AS t"
            ),
            "tasks_without_a_success": one(
                "SELECT count(*) FROM agents_task AS t WHERE NOT EXISTS (SELECT 1 FROM agents_taskattempt AS a"
                " WHERE a.task_id = t.id AND a.outcome = 'succeeded')"
            ),
            "completed_events": one("SELECT count(*) FROM audit_auditevent WHERE event_type = 'task.completed'"),
            "tasks_with_two_completed_events": one(
                "SELECT count(*) FROM (SELECT resource_id FROM audit_auditevent WHERE event_type = 'task.completed'"
                " GROUP BY resource_id HAVING count(*) > 1) AS t"
            ),
            "audit_events": one("SELECT count(*) FROM audit_auditevent"),
        }
    verify = subprocess.run([sys.executable, "manage.py", "audit_verify"], cwd=ROOT, env=env, capture_output=True,
                            text=True)  # fmt: skip
    result["audit_verify_ok"] = verify.returncode == 0
    result["audit_verify"] = (verify.stdout + verify.stderr).strip().splitlines()[-1:]
    result["ok"] = (
        result["succeeded"] == tasks
        and result["tasks_with_two_successes"] == 0
        and result["tasks_without_a_success"] == 0
        and result["completed_events"] == tasks
        and result["tasks_with_two_completed_events"] == 0
        and result["audit_verify_ok"]
    )
    return result


def main() -> int:
    args = parse_args()
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="symphony-instances-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        env = environment(args, tmp)
        keys = prepare(args, env)
        servers = [
            stack.enter_context(harness.gunicorn(env, args.port_base + i, workers=args.gunicorn_workers,
                                                 log=tmp / f"gunicorn-{i}.log", ready_path="/health/live"))
            for i in range(args.instances)
        ]  # fmt: skip
        urls = [server.base for server in servers]
        workers: list[subprocess.Popen] = []
        stack.callback(lambda: [harness.stop(w, timeout=5) for w in workers])
        log = tmp / "workers.log"
        for n, key in enumerate(keys):
            workers.append(start_worker(urls[n % len(urls)], key, args, env, log))
        began, kills, rng = time.monotonic(), 0, random.Random(15)
        next_kill = began + args.kill_every if args.kill_every else float("inf")
        while (left := remaining(env)) and time.monotonic() - began < args.timeout:
            if time.monotonic() >= next_kill:
                n = rng.randrange(len(workers))
                os.killpg(workers[n].pid, signal.SIGKILL)
                workers[n].wait()
                workers[n] = start_worker(urls[(n + kills + 1) % len(urls)], keys[n], args, env, log)
                kills += 1
                next_kill += args.kill_every
            time.sleep(0.25)
        elapsed = time.monotonic() - began
        result = {"instances": args.instances, "workers": args.workers, "tasks": args.tasks, "kills": kills,
                  "seconds": round(elapsed, 1), "tasks_per_s": round(args.tasks / elapsed, 1), "left": left,
                  "load_at_start": load_at_start, "load_at_end": os.getloadavg()}  # fmt: skip
        result |= check(env, args.tasks)
    if not args.keep_database:  # after every server and worker has stopped
        with psycopg_admin(args.database_url) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {args.database_url.rsplit('/', 1)[1]} WITH (FORCE)")
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def psycopg_admin(url: str):
    import psycopg

    return psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True)


if __name__ == "__main__":
    sys.exit(main())
