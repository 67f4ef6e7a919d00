"""The operator console's dashboard at scale (PostgreSQL): server time and SQL queries of the admin
index and of the JSON its page polls, with 100,000 tasks and 1,000,000 audit events.

    createdb -h 127.0.0.1 -U postgres symphony_console_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/symphony_console_bench python bench/bench_console.py

The target database is migrated and its tasks, agents and audit events are replaced (point it at a
database of its own). Tasks: two projects of five orchestras each; 90,000 succeeded and 5,000 failed
spread over the last seven days, 3,000 cancelled, 1,500 pending, 300 running, 200 waiting for
approval. Audit: 1,000,000 events over 30 days, 2,000 of them ``task.expired``, inserted already sealed
(positions 1..N, stand-in hashes: the chain does not verify, which the dashboard never asks; unsealed
rows would make the first audited request seal a million rows). Loaded with INSERT ... SELECT
generate_series, then ANALYZEd.

Each page is requested in this process through the whole middleware stack with Django's test client
(what gunicorn's worker would run, without the socket): ``--repeat`` times as a superuser and as an
operator of one project, with the chart cache off (every request scans) and on (the default, 10 s).
Reported: median and p95 wall time per request, and the number of SQL queries (the same every time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghijklmnop")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("STATICFILES_STORAGE", "django.contrib.staticfiles.storage.StaticFilesStorage")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

TASKS = {"succeeded": 90_000, "failed": 5_000, "cancelled": 3_000, "pending": 1_500, "running": 300,
         "waiting_approval": 200}  # fmt: skip
AUDIT_EVENTS = 1_000_000
EXPIRED_EVENTS = 2_000


def _seed() -> dict[str, object]:
    from accounts.models import Project, Role, RoleBinding, User
    from agents.models import Agent, Orchestra

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE agents_task, agents_taskattempt, agents_taskevent CASCADE")
        cursor.execute("TRUNCATE audit_auditevent RESTART IDENTITY")  # the bench runs as a superuser
    Agent.objects.all().delete()
    Orchestra.objects.all().delete()
    User.objects.filter(username__in=["bench-root", "bench-op", "bench-owner"]).delete()
    owner = User.objects.create_user(username="bench-owner")
    projects = [Project.objects.get_or_create(slug=slug, defaults={"name": slug})[0] for slug in ("bench-a", "bench-b")]
    orchestras = [
        Orchestra.objects.create(name=f"{p.slug}-o{i}", project=p, state="running") for p in projects for i in range(5)
    ]
    agent = Agent.objects.create(name="bench-agent", project=projects[0], owner=owner, status="busy")
    ids = ",".join(str(o.pk) for o in orchestras)
    projects_of = ",".join(str(o.project_id) for o in orchestras)
    start = time.perf_counter()
    with connection.cursor() as cursor:
        for status, count in TASKS.items():
            finished = (
                "now() - random() * interval '7 days'" if status in ("succeeded", "failed", "cancelled") else "NULL"
            )
            running = status == "running"
            cursor.execute(
                f"""
                INSERT INTO agents_task (kind, input, required_capabilities, priority, status, attempts,
                  max_attempts, lease_expires_at, error, idempotency_key, traceparent, created_at, updated_at,
                  finished_at, agent_id, orchestra_id, submitter_id, last_attempt, project_id, step_key,
                  waiting_on, concurrency_key, fair_seq, fairness_key)
                SELECT 'echo', '{{}}', '[]', 1, %s, {1 if running else 0}, 3,
                  {"now() + interval '60 seconds'" if running else "NULL"}, '', '', '',
                  now() - random() * interval '7 days', now(), {finished}, {agent.pk if running else "NULL"},
                  (ARRAY[{ids}])[1 + g %% 10], %s, {1 if running else 0}, (ARRAY[{projects_of}])[1 + g %% 10], '',
                  0, '', g, ''
                FROM generate_series(1, %s) AS g
                """,  # noqa: S608 - numbers only
                [status, owner.pk, count],
            )
        cursor.execute(
            """
            INSERT INTO audit_auditevent (occurred_at, event_type, severity, outcome, actor_name, api_key_prefix,
              user_agent, resource_type, resource_id, action, details, request_id, trace_id, prev_hash, project,
              chain_seq, hash)
            SELECT now() - random() * interval '30 days',
              CASE WHEN g <= %s THEN 'task.expired'
                   ELSE (ARRAY['task.claimed','task.completed','task.submitted','auth.login'])[1 + g %% 4]
              END,
              'info', 'success', 'bench', '', '', 'agents.task', (g %% 100000)::text, '', '{}', '', '', '',
              (ARRAY['bench-a','bench-b'])[1 + g %% 2], g, encode(sha256(g::text::bytea), 'hex')
            FROM generate_series(1, %s) AS g
            """,
            [EXPIRED_EVENTS, AUDIT_EVENTS],
        )
        cursor.execute("ANALYZE agents_task")
        cursor.execute("ANALYZE audit_auditevent")
    load_seconds = time.perf_counter() - start
    root = User.objects.create_user(username="bench-root", password="x", is_staff=True, is_superuser=True)  # noqa: S106
    op = User.objects.create_user(username="bench-op", password="x", is_staff=True)  # noqa: S106
    RoleBinding.objects.create(user=op, role=Role.objects.get(name="operator"), project=projects[0])
    return {"root": root, "operator": op, "load_seconds": round(load_seconds, 1)}


def _measure(user: object, path: str, repeat: int, chart_cache: int) -> dict[str, object]:
    client = Client()
    client.force_login(user)
    times, queries = [], set()
    with override_settings(SYMPHONY_CONSOLE_CHART_CACHE_SECONDS=chart_cache):
        cache.clear()
        client.get(path)  # warm: permission caches, templates
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.status_code
            queries.add(len(captured.captured_queries))
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "queries": sorted(queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-seed", action="store_true", help="reuse the data of the last run")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL database of its own.")
    call_command("migrate", verbosity=0)
    from accounts.models import User

    if args.no_seed:
        users = {"root": User.objects.get(username="bench-root"), "operator": User.objects.get(username="bench-op")}
        load = None
    else:
        users = _seed()
        load = users.pop("load_seconds")
    from agents.models import Task
    from audit.models import AuditEvent

    report: dict[str, object] = {
        "tasks": Task.objects.count(),
        "audit_events": AuditEvent.objects.count(),
        "load_seconds": load,
    }
    for who in ("root", "operator"):
        for path in ("/admin/", "/admin/console/dashboard.json"):
            for label, ttl in (("charts_uncached", 0), ("charts_cached", 10)):
                report[f"{who} {path} {label}"] = _measure(users[who], path, args.repeat, ttl)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
