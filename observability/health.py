"""Health checks: the built-in components and a runner that gives every check a timeout.

Checks run in a small shared thread pool and are awaited with a per-check deadline, so a database that
accepts the connection and then hangs makes its check "unhealthy: timed out" instead of hanging the
probe (and the kubelet's view of the pod). A timed-out check keeps its pool thread until it returns;
the pool is bounded, so a permanently hung dependency costs at most ``_POOL_SIZE`` threads per worker.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from opentelemetry.instrumentation.utils import suppress_instrumentation

from observability.registry import DEGRADED, HEALTHY, UNHEALTHY, HealthCheck, HealthResult, health_checks

_POOL_SIZE = 4
_pool = ThreadPoolExecutor(max_workers=_POOL_SIZE, thread_name_prefix="symphony-health")
_STARTED_AT = time.monotonic()
_SEVERITY = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}

# Once every migration is applied it stays applied for the life of the process (a deploy restarts
# it), so the migration graph is loaded once, not on every readiness probe.
_migrations_applied = False
_boot_completed = False


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    status: str
    message: str
    duration_ms: float
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        body = {"status": self.status, "message": self.message, "duration_ms": self.duration_ms}
        if self.details:
            body["details"] = self.details
        return body


# --- boot ------------------------------------------------------------------------------------------


def boot_completed() -> None:
    """Mark the process as booted: called at the end of ``symphony/wsgi.py``, once settings are loaded,
    apps are ready, the middleware chain is built and the URLconf is imported."""
    global _boot_completed
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - import every urls module now, not on the first request
    _boot_completed = True


def is_boot_completed() -> bool:
    return _boot_completed


def uptime_seconds() -> float:
    return round(time.monotonic() - _STARTED_AT, 3)


# --- built-in checks -------------------------------------------------------------------------------


def check_database() -> HealthResult:
    connection = connections["default"]
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return HealthResult(HEALTHY, f"{connection.vendor} answered")


def check_cache() -> HealthResult:
    """Set and get through the shared cache. Unreachable is *degraded* when the install fails open
    (``SYMPHONY_RATELIMIT_FAIL_OPEN``: requests are served from the database, without rate limits, so
    the pod stays in service) and unhealthy when it fails closed (API requests get 503)."""
    # One key per process, a fresh value each time: proves the write landed, leaves nothing behind.
    key, token = f"symphony:health:{os.getpid()}", uuid.uuid4().hex
    try:
        cache.set(key, token, timeout=60)
        value = cache.get(key)
    except Exception as exc:
        if not getattr(settings, "SYMPHONY_RATELIMIT_FAIL_OPEN", True):
            raise
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
        return HealthResult(DEGRADED, f"unreachable, serving from the database without rate limits ({error})")
    if value != token:
        return HealthResult(UNHEALTHY, "cache did not return the value just written")
    return HealthResult(HEALTHY, "set and get succeeded")


def check_migrations() -> HealthResult:
    global _migrations_applied
    if _migrations_applied:
        return HealthResult(HEALTHY, "all migrations applied")
    from django.db.migrations.executor import MigrationExecutor

    connection = connections["default"]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        pending = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
        return HealthResult(UNHEALTHY, f"{len(plan)} migration(s) not applied", {"pending": pending[:20]})
    _migrations_applied = True
    return HealthResult(HEALTHY, "all migrations applied")


def check_redis() -> HealthResult:
    from django_redis import get_redis_connection

    started = time.perf_counter()
    get_redis_connection("default").ping()
    return HealthResult(HEALTHY, "PING answered", {"ping_ms": round((time.perf_counter() - started) * 1000, 2)})


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def check_memory() -> HealthResult:
    rss_mb = round(rss_bytes() / (1024 * 1024), 1)
    limit_mb = settings.SYMPHONY_MEMORY_LIMIT_MB
    details = {"rss_mb": rss_mb, "limit_mb": limit_mb or None, "pid": os.getpid()}
    if not limit_mb:
        return HealthResult(HEALTHY, f"RSS {rss_mb} MiB (no limit configured)", details)
    used = rss_mb / limit_mb
    details["used_ratio"] = round(used, 3)
    if used >= 0.95:
        return HealthResult(UNHEALTHY, f"RSS {rss_mb} MiB is {used:.0%} of the {limit_mb} MiB limit", details)
    if used >= 0.80:
        return HealthResult(DEGRADED, f"RSS {rss_mb} MiB is {used:.0%} of the {limit_mb} MiB limit", details)
    return HealthResult(HEALTHY, f"RSS {rss_mb} MiB of {limit_mb} MiB", details)


def check_disk() -> HealthResult:
    path = Path(settings.VAR_DIR)
    usage = shutil.disk_usage(path if path.exists() else path.parent)
    free_mb = usage.free // (1024 * 1024)
    minimum = settings.SYMPHONY_DISK_MIN_FREE_MB
    details = {"path": str(path), "free_mb": free_mb, "total_mb": usage.total // (1024 * 1024), "min_free_mb": minimum}
    if free_mb < minimum:
        return HealthResult(UNHEALTHY, f"{free_mb} MiB free, below the {minimum} MiB minimum", details)
    if free_mb < 2 * minimum:
        return HealthResult(DEGRADED, f"{free_mb} MiB free, close to the {minimum} MiB minimum", details)
    return HealthResult(HEALTHY, f"{free_mb} MiB free", details)


READY_CHECKS = (
    HealthCheck("database", check_database, timeout=2.0),
    HealthCheck("cache", check_cache, timeout=2.0),
    HealthCheck("migrations", check_migrations, timeout=5.0),
)


def full_checks() -> list[HealthCheck]:
    """Every component of ``/health``: built-ins, Redis when configured, then the registry's checks."""
    checks = [HealthCheck("database", check_database, timeout=2.0)]
    if getattr(settings, "REDIS_URL", ""):
        checks.append(HealthCheck("redis", check_redis, timeout=2.0))
    checks += [HealthCheck("memory", check_memory, timeout=1.0), HealthCheck("disk", check_disk, timeout=1.0)]
    checks += list(health_checks().values())
    return checks


# --- runner ----------------------------------------------------------------------------------------


def _timed(func: Callable[[], HealthResult]) -> tuple[HealthResult, float]:
    started = time.perf_counter()
    try:
        # Probes every few seconds would otherwise fill the tracing backend with root spans of
        # SELECT 1 and cache round trips.
        with suppress_instrumentation():
            result = func()
    except Exception as exc:  # noqa: BLE001 - a failing check is a result, not a crash
        result = HealthResult(UNHEALTHY, f"{type(exc).__name__}: {str(exc)[:200]}")
    finally:
        if func in (check_database, check_migrations):
            # Pool threads keep their own connection; drop it if it broke so the next probe reconnects.
            connections["default"].close_if_unusable_or_obsolete()
    return result, round((time.perf_counter() - started) * 1000, 2)


def run_checks(checks: Iterable[HealthCheck]) -> list[ComponentStatus]:
    """Run ``checks`` concurrently, each bounded by its own timeout (counted from submission)."""
    started = time.perf_counter()
    submitted = [(check, _pool.submit(_timed, check.func)) for check in checks]
    results = []
    for check, future in submitted:
        remaining = check.timeout - (time.perf_counter() - started)
        try:
            result, duration_ms = future.result(timeout=max(remaining, 0.0))
        except FutureTimeout:
            result = HealthResult(UNHEALTHY, f"timed out after {check.timeout:g}s")
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
        results.append(ComponentStatus(check.name, result.status, result.message, duration_ms, result.details))
    return results


def overall(results: Iterable[ComponentStatus]) -> str:
    worst = HEALTHY
    for result in results:
        status = result.status if result.status in _SEVERITY else UNHEALTHY
        if _SEVERITY[status] > _SEVERITY[worst]:
            worst = status
    return worst
