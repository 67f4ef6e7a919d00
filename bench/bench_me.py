"""In-process benchmark of ``GET /api/v1/me/`` with an API key, warm and cold permission cache.

Not a test: it prints a small table of the median (and p90) time per request and the database
queries each request makes. It runs the whole Django stack (middleware, DRF, auth, permission
class, serializer) through the test client, without a network hop.

    python bench/bench_me.py                       # embedded default: SQLite (temp dir) + the shared SQLite cache
    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/bench_me.py   # real services

"Cold" means the permission cache was invalidated just before the request (what every request
sees right after a role or key change): the key, its owner, roles and permissions are loaded again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def configure() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdef")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    os.environ.setdefault("STATICFILES_STORAGE", "django.contrib.staticfiles.storage.StaticFilesStorage")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # Keep the limiter on (its cost is part of a real request) with a limit no run reaches.
    os.environ.setdefault("SYMPHONY_RATELIMIT_DEFAULT", "1000000000/15m")
    if not os.environ.get("DATABASE_URL"):
        os.environ["SYMPHONY_VAR_DIR"] = tempfile.mkdtemp(prefix="symphony-bench-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=500, help="requests per scenario (default 500)")
    args = parser.parse_args()
    configure()

    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts import services
    from accounts.backends import invalidate_permissions
    from accounts.models import User

    call_command("migrate", verbosity=0)
    cache.clear()
    username = f"bench-{os.getpid()}"
    user = services.user_create(actor=None, username=username, roles=["operator"])
    _key, raw = services.api_key_create(owner=user, name="bench")
    client = Client(headers={"Authorization": f"Bearer {raw}"})

    def measure(cold: bool) -> tuple[list[float], list[int]]:
        times, queries = [], []
        for _ in range(args.requests):
            if cold:
                invalidate_permissions()
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get("/api/v1/me/")
                times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.content
            queries.append(len(captured.captured_queries))
        return times, queries

    measure(cold=False)  # warm up imports, connections and the cache
    rows = []
    for label, cold in (("warm cache", False), ("cold cache", True)):
        times, queries = measure(cold)
        times.sort()
        rows.append(
            (label, statistics.median(times), times[int(len(times) * 0.9)], statistics.median(queries), max(queries))
        )

    engine = connection.vendor
    from django.conf import settings

    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"GET /api/v1/me/ with an API key, {args.requests} requests each, {engine} + {cache_backend}")
    print(f"{'scenario':<12} {'median ms':>10} {'p90 ms':>8} {'queries':>8} {'max q':>6}")
    for label, median, p90, q_median, q_max in rows:
        print(f"{label:<12} {median:>10.3f} {p90:>8.3f} {q_median:>8.0f} {q_max:>6}")
    User.objects.filter(username=username).delete()


if __name__ == "__main__":
    main()
