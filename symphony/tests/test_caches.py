"""The embedded default's shared cache (symphony.caches.SQLiteCache): Django's cache API, exact across
processes, expiry, and a fresh start after a reboot."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from pathlib import Path

import pytest
import redis
import time_machine

from symphony import caches
from tests.servers import RedisServer


def _cache(path: Path, **options) -> caches.SQLiteCache:
    return caches.SQLiteCache(str(path), {"KEY_PREFIX": "t", "OPTIONS": options})


@pytest.fixture
def cache(tmp_path):
    return _cache(tmp_path / "cache.sqlite3")


def test_it_speaks_djangos_cache_api(cache):
    cache.set("a", {"x": [1, 2]})
    cache.set("n", 41)
    cache.set_many({"b": "bee", "c": None})

    assert cache.get("a") == {"x": [1, 2]}
    assert cache.get("missing", "default") == "default"
    assert cache.get_many(["a", "b", "c", "missing"]) == {"a": {"x": [1, 2]}, "b": "bee", "c": None}
    assert cache.incr("n") == 42
    assert cache.decr("n", 2) == 40
    assert cache.add("a", "other") is False
    assert cache.add("new", True) is True
    assert cache.get("new") is True
    assert cache.has_key("b") and not cache.has_key("missing")
    assert cache.delete("b") is True
    assert cache.delete("b") is False
    cache.delete_many(["a", "c"])
    assert cache.get_many(["a", "c"]) == {}
    with pytest.raises(ValueError):
        cache.incr("missing")


def test_it_deletes_by_pattern_within_its_prefix(tmp_path):
    ours, theirs = _cache(tmp_path / "c.sqlite3"), caches.SQLiteCache(str(tmp_path / "c.sqlite3"), {"KEY_PREFIX": "u"})
    ours.set_many({"rbac:user:1": 1, "rbac:user:2": 2, "rl:x": 3})
    theirs.set("rbac:user:1", 9)

    ours.delete_pattern("rbac:*")

    assert ours.get_many(["rbac:user:1", "rbac:user:2", "rl:x"]) == {"rl:x": 3}
    assert theirs.get("rbac:user:1") == 9


def test_it_expires_entries_and_lets_add_replace_an_expired_one(cache):
    with time_machine.travel(dt.datetime(2030, 1, 1, tzinfo=dt.UTC), tick=False) as clock:
        cache.set("short", "v", timeout=10)
        cache.set("forever", "v", timeout=None)
        cache.add("counter", 1, timeout=10)
        clock.shift(9)
        assert cache.get("short") == "v"
        assert cache.touch("short", timeout=10) is True
        clock.shift(9)
        assert cache.get("short") == "v"
        clock.shift(2)

        assert cache.get("short") is None
        assert cache.get("forever") == "v"
        with pytest.raises(ValueError):
            cache.incr("counter")
        assert cache.add("counter", 5, timeout=10) is True
        assert cache.incr("counter") == 6


def test_it_culls_expired_and_oldest_entries_past_max_entries(tmp_path):
    cache = _cache(tmp_path / "c.sqlite3", MAX_ENTRIES=10, CULL_FREQUENCY=2, CULL_EVERY=5)
    for i in range(30):
        cache.set(f"k{i}", i, timeout=100 + i)

    assert sum(cache.has_key(f"k{i}") for i in range(30)) <= 15
    assert cache.get("k29") == 29  # the newest survive


def _count(path: str, key: str, times: int) -> None:
    cache = _cache(Path(path))
    for _ in range(times):
        try:
            cache.incr(key)
        except ValueError:
            if not cache.add(key, 1, timeout=None):
                cache.incr(key)


def _try_add(path: str, key: str, results) -> None:
    results.put(_cache(Path(path)).add(key, 1, timeout=None))


def _in_four_processes(target, path: str, key: str, times: int) -> list[int | None]:
    """Run ``target(path, key, times)`` in four processes at once; their exit codes."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=target, args=(path, key, times)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return [w.exitcode for w in workers]


def test_it_counts_exactly_across_processes(tmp_path):
    """Four processes increment one counter 300 times each: no increment is lost (what per-worker
    LocMem caches lost, and what rate limits across gunicorn workers rely on)."""
    path = str(tmp_path / "shared.sqlite3")
    assert _in_four_processes(_count, path, "hits", 300) == [0, 0, 0, 0]
    assert _cache(Path(path)).get("hits") == 1200


def test_it_lets_exactly_one_process_add_a_key(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_try_add, args=(path, "once", results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(60)

    assert sorted(outcomes) == [False, False, False, True]


def test_it_keeps_entries_across_restarts_but_not_across_reboots(tmp_path, monkeypatch):
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    monkeypatch.setattr(caches, "_BOOT_ID", boot)
    path = tmp_path / "c.sqlite3"
    _cache(path).set("generation", 7, timeout=None)

    assert _cache(path).get("generation") == 7  # a new process of the same boot
    boot.write_text("boot-2\n")
    assert _cache(path).get("generation") is None  # after a reboot: a power loss may have lost writes


@pytest.fixture(params=["sqlite", "redis"])
def counting_cache(request, tmp_path):
    """Each backend of ``incr_window`` (the rate limiter's counting call), Redis on a server of its own."""
    if request.param == "sqlite":
        yield _cache(tmp_path / "cache.sqlite3")
        return
    with RedisServer(tmp_path) as server:
        yield caches.RedisCache(server.url, {"KEY_PREFIX": "t", "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5}})


def test_it_counts_a_window_and_reads_other_entries_with_the_count(counting_cache):
    counting_cache.set("generation", 1733000000000, timeout=None)
    counting_cache.set("entry", {"key": "value"}, timeout=None)

    assert counting_cache.incr_window("window", 60) == (1, {})
    assert counting_cache.incr_window("window", 60, ["generation", "entry", "missing"]) == (
        2,
        {"generation": 1733000000000, "entry": {"key": "value"}},
    )
    assert counting_cache.get("window") == 2  # where django-ratelimit's get_usage reads it
    assert counting_cache.incr_window("other", 60, ["generation"]) == (1, {"generation": 1733000000000})


def test_a_counted_window_expires_and_starts_again_at_one(counting_cache):
    counting_cache.incr_window("window", 1)
    counting_cache.incr_window("window", 1)
    time.sleep(1.1)  # Redis expires keys on its own clock: nothing to travel in time here
    assert counting_cache.incr_window("window", 1) == (1, {})
    assert counting_cache.incr_window("window", 1) == (2, {})


def _count_windows(path: str, key: str, times: int) -> None:
    cache = _cache(Path(path))
    for _ in range(times):
        cache.incr_window(key, 60)


def test_it_counts_a_window_exactly_across_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    assert _in_four_processes(_count_windows, path, "window", 300) == [0, 0, 0, 0]
    assert _cache(Path(path)).get("window") == 1200


def test_the_redis_breaker_fails_fast_and_closes_once_a_probe_gets_an_answer(tmp_path):
    """After a connection error every call is refused at once (no round trip, so no socket timeout
    against a stopped server); a background probe closes the breaker as soon as Redis answers."""
    with RedisServer(tmp_path) as server:
        cache = caches.RedisCache(server.url, {"OPTIONS": {"BREAKER_SECONDS": 0.05, "SOCKET_CONNECT_TIMEOUT": 0.5}})
        cache.set("hits", 1, timeout=None)
        server.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            cache.incr("hits")
        with pytest.raises(caches.CacheUnavailable):
            cache.get("hits")  # refused at once
        server.start()
        deadline = time.monotonic() + 10
        while cache.breaker.failing_since and time.monotonic() < deadline:
            time.sleep(0.02)  # polling for the probe thread

        assert cache.breaker.failing_since == 0.0
        with pytest.raises(ValueError):
            cache.incr("hits")  # gone with the restarted server: Redis's own answer, not an outage
        assert cache.add("hits", 5) is True
        assert cache.incr("hits") == 6
