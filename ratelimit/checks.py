"""System check: the counters must live in a cache every process of the install shares.

It replaces django-ratelimit's own check (which knows neither of our backends): a per-process cache
such as ``LocMemCache`` would let each gunicorn worker count on its own, N workers allowing N times
the limit.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

SHARED_BACKENDS = {
    "symphony.caches.SQLiteCache",
    "symphony.caches.RedisCache",
    "django_redis.cache.RedisCache",
    "django.core.cache.backends.redis.RedisCache",
    "django.core.cache.backends.memcached.PyMemcacheCache",
    "django.core.cache.backends.memcached.PyLibMCCache",
}


def check_counter_cache(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    alias = settings.RATELIMIT_USE_CACHE
    if alias not in settings.CACHES:
        return [checks.Error(f"SYMPHONY_RATELIMIT_CACHE names {alias!r}, which is not in CACHES", id="ratelimit.E001")]
    backend = settings.CACHES[alias]["BACKEND"]
    if backend not in SHARED_BACKENDS:
        return [
            checks.Warning(
                f"rate-limit counters in {backend}, which may not be shared by every process",
                hint="Each process would count on its own; use the default cache (SQLite file or Redis).",
                id="ratelimit.W001",
            )
        ]
    return []


def register() -> None:
    checks.register(check_counter_cache, checks.Tags.caches)
