"""In-process profile of Symphony's hot API paths: median ms, SQL statements and cache round trips.

Not a test and not the HTTP benchmark (``make bench``): it drives the whole Django stack (middleware,
DRF, authentication, permission class, serializers) through the test client, without a network hop or
gunicorn, so a change's effect on per-request work shows up without the noise of a shared machine.

    python bench/profile_hot_paths.py                  # embedded default: SQLite (temp dir) + SQLite cache
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/symphony_perf REDIS_URL=redis://127.0.0.1:6379/9 \\
        python bench/profile_hot_paths.py [-n 300] [--profile agents]   # real services (what counts)

``--profile NAME`` prints the cProfile top functions of one scenario (bare, health, me, agents, orchestras,
tasks, audit, heartbeat, submit, dispatch, batch), timed in CPU (time spent waiting for the database is not counted);
``PROFILE_SORT`` (default ``cumulative``, or ``tottime``) and ``PROFILE_LINES`` (45) shape the listing.
The database is migrated and seeded with rows named ``perf-*``, which are removed first, so it may
be run again against the same database.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

AGENTS = 50


def configure() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdef")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    os.environ.setdefault("STATICFILES_STORAGE", "django.contrib.staticfiles.storage.StaticFilesStorage")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("SYMPHONY_TRACING", "false")
    os.environ.setdefault("SYMPHONY_BENCH_VIEWS", "true")  # /bench/constant, the bare baseline
    # The limiter stays on (it is on every API request in production) but never refuses a run.
    os.environ.setdefault("SYMPHONY_RATELIMIT_DEFAULT", "1000000000/15m")
    if not os.environ.get("DATABASE_URL"):
        os.environ["SYMPHONY_VAR_DIR"] = tempfile.mkdtemp(prefix="symphony-profile-")


class CacheCounter:
    """Counts round trips to Redis (every redis-py command, MGET included) while ``active``."""

    def __init__(self) -> None:
        self.count = 0
        try:
            import redis.client
        except ImportError:  # pragma: no cover - redis is a dependency
            return
        original = redis.client.Redis.execute_command
        counter = self

        def execute_command(self, *args, **kwargs):
            counter.count += 1
            return original(self, *args, **kwargs)

        redis.client.Redis.execute_command = execute_command


def seed() -> dict:
    """A super_admin with a key, 50 agents with keys in one running orchestra, some tasks and events."""
    from django.contrib.auth import get_user_model

    from accounts.models import Role
    from accounts.services import api_key_create
    from agents import services
    from agents.models import Agent, Orchestra, Task

    User = get_user_model()
    Task.objects.filter(orchestra__name__startswith="perf-").delete()
    for agent in Agent.objects.filter(name__startswith="perf-"):
        services.agent_delete(agent=agent, actor=None)
    Orchestra.objects.filter(name__startswith="perf-").delete()
    User.objects.filter(username="perf").delete()
    user = User.objects.create(username="perf")
    user.roles.add(*Role.objects.filter(name="super_admin"))
    orchestra = services.orchestra_create(actor=user, name="perf-orchestra")
    services.orchestra_transition(orchestra=orchestra, actor=user, action="start")
    agent_keys = []
    for i in range(AGENTS):
        agent, raw = services.agent_create(owner=user, name=f"perf-{i:02d}", capabilities=["echo"])
        orchestra.agents.add(agent)
        agent_keys.append(raw)
    for i in range(5):
        services.orchestra_create(actor=user, name=f"perf-extra-{i}")
    Task.objects.bulk_create(
        [Task(orchestra=orchestra, kind="echo", input={"n": n}, submitter=user) for n in range(50)]
    )
    _, raw = api_key_create(owner=user, name="perf")
    return {"user": user, "orchestra": orchestra, "user_key": raw, "agent_keys": agent_keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=300, help="requests per scenario (default 300)")
    parser.add_argument("--profile", default="", help="print cProfile top functions of this scenario")
    parser.add_argument("--only", default="", help="comma-separated scenarios to run (default: all)")
    args = parser.parse_args()
    configure()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from agents.models import Task

    call_command("migrate", verbosity=0)
    # No cache.clear(): with Redis that empties the whole database number, test runs' sessions included.
    counter = CacheCounter()
    data = seed()
    user_client = Client(headers={"Authorization": f"Bearer {data['user_key']}"})
    agent_client = Client(headers={"Authorization": f"Bearer {data['agent_keys'][0]}"})
    orchestra = data["orchestra"]

    def get(client: Client, path: str) -> Callable[[], None]:
        def call() -> None:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.content[:300])

        return call

    def heartbeat() -> None:
        response = agent_client.post("/api/v1/agent/heartbeat/", {}, content_type="application/json")
        assert response.status_code == 200, response.content[:300]

    def dispatch() -> None:
        # One task claimed and completed: what an agent's loop costs the server per task.
        r = agent_client.post("/api/v1/agent/claim/", {"max_tasks": 1}, content_type="application/json")
        assert r.status_code == 200, r.content[:300]
        (task,) = r.json()["tasks"]
        r = agent_client.post(
            f"/api/v1/tasks/{task['id']}/complete/",
            {"attempt": task["attempt"], "result": {"ok": True}},
            content_type="application/json",
        )
        assert r.status_code == 200, r.content[:300]

    def batch() -> None:
        # Ten tasks claimed at once and completed with one batch request (per cycle, not per task).
        r = agent_client.post("/api/v1/agent/claim/", {"max_tasks": 10}, content_type="application/json")
        assert r.status_code == 200, r.content[:300]
        tasks = r.json()["tasks"]
        assert len(tasks) == 10, len(tasks)
        results = [{"task": t["id"], "attempt": t["attempt"], "result": {"ok": True}} for t in tasks]
        r = agent_client.post("/api/v1/agent/complete/", {"results": results}, content_type="application/json")
        assert r.status_code == 200, r.content[:300]

    def submit() -> None:
        # One task submitted by an operator's key: the first half of submit-to-claim latency.
        r = user_client.post(
            "/api/v1/tasks/",
            {"orchestra": orchestra.pk, "kind": "echo", "input": {"n": 1}, "required_capabilities": ["echo"]},
            content_type="application/json",
        )
        assert r.status_code == 201, r.content[:300]

    scenarios: dict[str, tuple[str, Callable[[], None]]] = {
        "bare": ("bare Django view (baseline)", get(Client(), "/bench/constant")),
        "health": ("GET /health/live", get(Client(), "/health/live")),
        "me": ("GET /api/v1/me/ (API key)", get(user_client, "/api/v1/me/")),
        "agents": (f"GET /api/v1/agents/ ({AGENTS} agents)", get(user_client, "/api/v1/agents/")),
        "orchestras": ("GET /api/v1/orchestras/", get(user_client, "/api/v1/orchestras/")),
        "tasks": ("GET /api/v1/tasks/ (50/page)", get(user_client, "/api/v1/tasks/")),
        "audit": ("GET /api/v1/audit-events/", get(user_client, "/api/v1/audit-events/")),
        "heartbeat": ("POST /api/v1/agent/heartbeat/", heartbeat),
        "submit": ("POST /api/v1/tasks/ (submit)", submit),
        "dispatch": ("claim + complete (per task)", dispatch),
        "batch": ("claim 10 + complete 10 (per cycle)", batch),
    }

    rows = []
    for name, (label, call) in scenarios.items():
        if args.only and name not in args.only.split(","):
            continue
        n = args.requests
        if name in ("dispatch", "batch"):
            per_call = 10 if name == "batch" else 1
            Task.objects.bulk_create(
                [Task(orchestra=orchestra, kind="echo", input={"n": i}) for i in range((n + 120) * per_call)],
                batch_size=1000,
            )
        for _ in range(10 if name not in ("dispatch", "batch") else 5):  # warm imports, connections and caches
            call()
        times, cpu, queries, trips = [], [], [], []
        for _ in range(n):
            before = counter.count
            with CaptureQueriesContext(connection) as captured:
                start, start_cpu = time.perf_counter(), time.process_time()
                call()
                cpu.append((time.process_time() - start_cpu) * 1000)
                times.append((time.perf_counter() - start) * 1000)
            queries.append(len(captured.captured_queries))
            trips.append(counter.count - before)
        if name == args.profile:
            profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting
            profiler.enable()
            for _ in range(min(n, 100)):
                call()
            profiler.disable()
            lines = int(os.environ.get("PROFILE_LINES", "45"))
            pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(lines)
        times.sort()
        rows.append((label, statistics.median(times), statistics.median(cpu), statistics.median(queries),
                     max(queries), statistics.median(trips)))  # fmt: skip

    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"{args.requests} requests per scenario, {connection.vendor} + {cache_backend}, in-process test client")
    print("median wall ms and median CPU ms of this process (CPU is what to compare on a shared machine)")
    print(f"{'scenario':<34} {'wall ms':>8} {'CPU ms':>8} {'SQL':>5} {'max SQL':>8} {'cache trips':>12}")
    for label, median, cpu_median, q_median, q_max, t_median in rows:
        print(f"{label:<34} {median:>8.3f} {cpu_median:>8.3f} {q_median:>5.0f} {q_max:>8} {t_median:>12.0f}")
    if "SKIP_CLEANUP" not in os.environ:
        Task.objects.filter(orchestra__name__startswith="perf-").delete()


if __name__ == "__main__":
    main()
