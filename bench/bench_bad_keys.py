"""In-process timing of the two bad-key paths of ``GET /api/v1/me/``: an unknown prefix, and a known
prefix with a wrong secret. Both must cost the same, or response times tell which prefixes exist.

Not a test. The requests of the two paths alternate (so the shared machine's noise falls on both),
through the whole Django stack (test client: middleware, rate limiter, DRF, authentication, audit of
the rejection). Three pairs:

- ``repeated``: the same unknown prefix each time vs the same known prefix (both cached after the
  first request: the unknown one as a stand-in entry, the known one as its key);
- ``fresh unknown``: a new unknown prefix each time (never cached: one query) vs a known prefix whose
  cache entry was just invalidated (the same one query: the secret is compared before anything else
  about the key is loaded).

    python bench/bench_bad_keys.py [-n 1000]     # embedded default (SQLite + the SQLite cache)
    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/bench_bad_keys.py
"""

from __future__ import annotations

import argparse
import os
import secrets
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
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # every rejection logs a warning
    os.environ.setdefault("SYMPHONY_RATELIMIT_DEFAULT", "1000000000/15m")
    if not os.environ.get("DATABASE_URL"):
        os.environ["SYMPHONY_VAR_DIR"] = tempfile.mkdtemp(prefix="symphony-bench-")


def _secret() -> str:
    return secrets.token_urlsafe(32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=1000, help="requests per path (default 1000)")
    args = parser.parse_args()
    configure()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from accounts import services
    from accounts.backends import invalidate_permissions
    from accounts.models import User

    call_command("migrate", verbosity=0)
    username = f"bench-badkeys-{os.getpid()}"
    user = services.user_create(actor=None, username=username, roles=["viewer"])
    key, _raw = services.api_key_create(owner=user, name="bench")
    client = Client()

    def timed(raw: str) -> float:
        start = time.perf_counter()
        response = client.get("/api/v1/me/", headers={"Authorization": f"Bearer {raw}"})
        elapsed = (time.perf_counter() - start) * 1000
        assert response.status_code == 401, response.content
        return elapsed

    def pair(unknown: callable, known: callable) -> tuple[float, float]:
        for _ in range(50):  # warm up imports, connections and the cache
            timed(unknown())
            timed(known())
        a, b = [], []
        for _ in range(args.requests):
            a.append(timed(unknown()))
            b.append(timed(known()))
        return statistics.median(a), statistics.median(b)

    fixed_unknown = f"sym_{secrets.token_hex(6)}_{_secret()}"
    wrong_secret = f"sym_{key.prefix}_{_secret()}"

    def known_cold() -> str:
        invalidate_permissions()
        return wrong_secret

    def fresh_unknown() -> str:
        invalidate_permissions()  # the same cache work as the known path's invalidation
        return f"sym_{secrets.token_hex(6)}_{_secret()}"

    rows = [
        ("repeated", *pair(lambda: fixed_unknown, lambda: wrong_secret)),
        ("fresh unknown", *pair(fresh_unknown, known_cold)),
    ]
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"GET /api/v1/me/ with a bad key, {args.requests} requests per path, {connection.vendor} + {cache_backend}")
    print(f"{'pair':<14} {'unknown prefix ms':>18} {'known, wrong secret ms':>23} {'difference ms':>14}")
    for label, unknown_ms, known_ms in rows:
        print(f"{label:<14} {unknown_ms:>18.3f} {known_ms:>23.3f} {unknown_ms - known_ms:>+14.3f}")
    User.objects.filter(username=username).delete()


if __name__ == "__main__":
    main()
