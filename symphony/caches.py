"""Cache backends of the two deployment shapes (settings name them by dotted path; nothing imports them).

``SQLiteCache``: the embedded default's cache, one SQLite file under ``SYMPHONY_VAR_DIR`` that every
process of the install shares. Django's in-process ``LocMemCache`` gives each gunicorn worker a cache of
its own, so a revocation, a role change or a rate-limit count seen by one worker was invisible to the
others. Here every worker reads and writes the same rows: permission generations, resolved keys and
rate-limit counters are exact across workers. WAL mode lets readers run beside the one writer; each
write is one statement (an UPSERT or an ``UPDATE ... RETURNING``), which SQLite applies atomically, so
``add`` and ``incr`` are race-free across processes.

``RedisCache``: django-redis with a circuit breaker. When Redis stops answering, every command would
wait for its socket timeout; with a SIGSTOP'd server that is a second per cache call and several per
request. After a failure the breaker fails every call at once (``CacheUnavailable``) while a
background thread pings Redis every ``BREAKER_SECONDS``; the first answer closes it. Callers treat
any cache exception as "unavailable" and fall back (docs/security.md, "When Redis is down").
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django_redis.cache import RedisCache as DjangoRedisCache

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entry (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_entry_expires ON cache_entry (expires);
CREATE TABLE IF NOT EXISTS cache_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:  # not Linux: no reboot detection
        return ""


class SQLiteCache(BaseCache):
    """A Django cache in one SQLite file shared by every process that opens it.

    ``LOCATION`` is the file. Integers are stored as SQLite integers (so ``incr`` is a single atomic
    ``UPDATE``); anything else is pickled. Expired rows are ignored on read and deleted every
    ``CULL_EVERY`` writes of a process, when the table also gives back its oldest entries beyond
    ``MAX_ENTRIES`` (``CULL_FREQUENCY`` as in Django's backends).

    The file outlives processes, not reboots: WAL with ``synchronous=NORMAL`` may lose the last writes
    on a power loss (never on a process crash), and a lost invalidation must not leave an older entry
    trusted. So the first process after a reboot (a new Linux boot id) empties the cache.
    """

    pickle_protocol = pickle.HIGHEST_PROTOCOL

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.path = Path(location)
        options = params.get("OPTIONS", {})
        self.busy_timeout_ms = int(options.get("BUSY_TIMEOUT_MS", 5000))
        self.cull_every = int(options.get("CULL_EVERY", 1000))
        self._local = threading.local()
        self._writes = 0

    # --- connection ------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened after fork (a connection must not cross a fork)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection = self._connect()
            local.pid = os.getpid()
        return local.connection

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        connection.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(_SCHEMA)
        self._forget_previous_boot(connection)
        return connection

    @staticmethod
    def _forget_previous_boot(connection: sqlite3.Connection) -> None:
        boot = _boot_id()
        if not boot:
            return
        row = connection.execute("SELECT value FROM cache_meta WHERE name = 'boot_id'").fetchone()
        if row is not None and row[0] == boot:
            return
        connection.execute("BEGIN IMMEDIATE")  # one process of the new boot empties it, the others see that
        try:
            row = connection.execute("SELECT value FROM cache_meta WHERE name = 'boot_id'").fetchone()
            if row is None or row[0] != boot:
                connection.execute("DELETE FROM cache_entry")
                connection.execute("INSERT OR REPLACE INTO cache_meta (name, value) VALUES ('boot_id', ?)", (boot,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def close(self, **kwargs: Any) -> None:
        """Kept open across requests (Django calls ``close`` after each one): one connection per thread."""

    # --- values ----------------------------------------------------------------------------------

    def _encode(self, value: Any) -> Any:
        if type(value) is int and -(2**63) <= value < 2**63:
            return value
        return pickle.dumps(value, self.pickle_protocol)

    @staticmethod
    def _decode(stored: Any) -> Any:
        return stored if isinstance(stored, int) else pickle.loads(stored)  # noqa: S301 - our own rows

    def _read(self, sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, tuple(params)).fetchall()

    def _write(self, sql: str, params: Iterable[Any]) -> sqlite3.Cursor:
        cursor = self._connection().execute(sql, tuple(params))
        self._writes += 1
        if self._writes % self.cull_every == 0:
            self._cull()
        return cursor

    def _cull(self) -> None:
        connection = self._connection()
        connection.execute("DELETE FROM cache_entry WHERE expires <= ?", (time.time(),))
        (count,) = connection.execute("SELECT count(*) FROM cache_entry").fetchone()
        if count > self._max_entries:
            drop = count if self._cull_frequency == 0 else count // self._cull_frequency
            connection.execute(
                "DELETE FROM cache_entry WHERE key IN "
                "(SELECT key FROM cache_entry ORDER BY expires IS NULL, expires LIMIT ?)",
                (drop,),
            )

    # --- the cache API ---------------------------------------------------------------------------

    _UPSERT = (
        "INSERT INTO cache_entry (key, value, expires) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
    )

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        rows = self._read(
            "SELECT value FROM cache_entry WHERE key = ? AND (expires IS NULL OR expires > ?)", (key, time.time())
        )
        return self._decode(rows[0][0]) if rows else default

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        wanted = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        sql = f"SELECT key, value FROM cache_entry WHERE key IN ({marks}) AND (expires IS NULL OR expires > ?)"  # noqa: S608
        return {wanted[stored]: self._decode(value) for stored, value in self._read(sql, (*wanted, time.time()))}

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        key = self.make_and_validate_key(key, version=version)
        self._write(self._UPSERT, (key, self._encode(value), self.get_backend_timeout(timeout)))

    def set_many(self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[str]:
        expires = self.get_backend_timeout(timeout)
        rows = [(self.make_and_validate_key(k, version=version), self._encode(v), expires) for k, v in data.items()]
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(self._UPSERT, rows)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return []

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        # Inserts, or replaces only an expired row: one statement, so two processes never both win.
        cursor = self._write(
            f"{self._UPSERT} WHERE cache_entry.expires IS NOT NULL AND cache_entry.expires <= ?",
            (key, self._encode(value), self.get_backend_timeout(timeout), time.time()),
        )
        return cursor.rowcount == 1

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        row = self._write(
            "UPDATE cache_entry SET value = value + ? "
            "WHERE key = ? AND typeof(value) = 'integer' AND (expires IS NULL OR expires > ?) RETURNING value",
            (delta, key, time.time()),
        ).fetchone()
        if row is None:
            raise ValueError(f"Key '{key}' not found")
        return row[0]

    def incr_window(self, key: str, timeout: int, read: Iterable[str] = ()) -> tuple[int, dict[str, Any]]:
        """Count one in the counter ``key`` (started at 1, expiring in ``timeout`` seconds, when it is
        missing or expired) and read the entries ``read``: ``(count, {name: value})``. One statement
        counts, so two processes never both start the window."""
        stored = self.make_and_validate_key(key)
        now = time.time()
        (count,) = self._write(f"{self._UPSERT_COUNTER} RETURNING value", (stored, now + timeout, now, now)).fetchone()
        return count, (self.get_many(read) if read else {})

    _UPSERT_COUNTER = (
        "INSERT INTO cache_entry (key, value, expires) VALUES (?, 1, ?) ON CONFLICT (key) DO UPDATE SET "
        "value = CASE WHEN cache_entry.expires <= ? OR typeof(cache_entry.value) != 'integer' THEN 1 "
        "ELSE cache_entry.value + 1 END, "
        "expires = CASE WHEN cache_entry.expires <= ? OR typeof(cache_entry.value) != 'integer' THEN excluded.expires "
        "ELSE cache_entry.expires END"
    )

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        cursor = self._write(
            "UPDATE cache_entry SET expires = ? WHERE key = ? AND (expires IS NULL OR expires > ?)",
            (self.get_backend_timeout(timeout), key, time.time()),
        )
        return cursor.rowcount == 1

    def has_key(self, key: str, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        sql = "SELECT 1 FROM cache_entry WHERE key = ? AND (expires IS NULL OR expires > ?)"
        return bool(self._read(sql, (key, time.time())))

    def delete(self, key: str, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._write("DELETE FROM cache_entry WHERE key = ?", (key,)).rowcount == 1

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        stored = [self.make_and_validate_key(key, version=version) for key in keys]
        if stored:
            marks = ",".join("?" * len(stored))
            self._write(f"DELETE FROM cache_entry WHERE key IN ({marks})", stored)  # noqa: S608 - only ?s

    def delete_pattern(self, pattern: str, version: int | None = None) -> int:
        """Delete the keys matching a glob (``*``, ``?``, ``[...]``) under this cache's prefix, as
        django-redis's ``delete_pattern`` does."""
        glob = self.make_key(pattern, version=version)
        return self._write("DELETE FROM cache_entry WHERE key GLOB ?", (glob,)).rowcount

    def clear(self) -> None:
        self._write("DELETE FROM cache_entry", ())


# --- Redis with a circuit breaker -----------------------------------------------------------------------


class CacheUnavailable(ConnectionError):
    """The shared cache failed and has not answered since; calls fail at once meanwhile."""


class _Breaker:
    """Per process and server. After a connection failure every call fails at once, and a background
    thread probes the server (``PING``) every ``seconds`` until it answers: no request ever waits on a
    probe, which against a SIGSTOP'd Redis would cost a whole socket timeout each time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.failing_since = 0.0
        self._lock = threading.Lock()
        self._prober: threading.Thread | None = None

    def before(self) -> None:
        if self.failing_since:
            raise CacheUnavailable("the cache is unreachable (a probe checks it every moment)")

    def failed(self, exc: BaseException, ping: Callable[[], Any]) -> None:
        with self._lock:
            if not self.failing_since:
                self.failing_since = time.monotonic()
                log.warning("cache_unavailable", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(
                    target=self._probe, args=(ping,), name="symphony-cache-probe", daemon=True
                )
                self._prober.start()

    def _probe(self, ping: Callable[[], Any]) -> None:
        while self.failing_since:
            time.sleep(self.seconds)
            try:
                ping()
            except Exception:  # noqa: BLE001, S112 - still down: probe again after the interval
                continue
            self.succeeded()

    def succeeded(self) -> None:
        if self.failing_since:
            log.warning("cache_recovered", outage_seconds=round(time.monotonic() - self.failing_since, 1))
            self.failing_since = 0.0


_breakers: dict[str, _Breaker] = {}


def _connection_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions
    from django_redis.exceptions import ConnectionInterrupted

    return (ConnectionInterrupted, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: RedisCache, *args: Any, **kwargs: Any) -> Any:
        self.breaker.before()
        try:
            result = method(self, *args, **kwargs)
        except self.connection_errors as exc:
            self.breaker.failed(exc, self.ping)
            raise
        return result

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class RedisCache(DjangoRedisCache):
    """django-redis's cache, failing fast while Redis is unreachable (probed every
    ``OPTIONS["BREAKER_SECONDS"]``, default 1 s). Errors are raised, never swallowed: each caller
    decides how to degrade."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        seconds = float(options.pop("BREAKER_SECONDS", 1.0))
        super().__init__(server, {**params, "OPTIONS": options})
        # Django builds a cache object per thread: the breaker is shared by the process's threads.
        self.breaker = _breakers.setdefault(server, _Breaker(seconds))
        self.connection_errors = _connection_errors()

    def is_failing(self) -> bool:
        """Whether this process currently knows Redis to be unreachable (calls would fail at once)."""
        return bool(self.breaker.failing_since)

    #: Counts one in KEYS[1] (created at 1 with a TTL of ARGV[1] seconds when missing) and returns the
    #: count with the values of KEYS[2:]. A script runs atomically: no two clients both start a window.
    _INCR_WINDOW = """
    local count
    if redis.call('EXISTS', KEYS[1]) == 1 then
        count = redis.call('INCR', KEYS[1])
    else
        redis.call('SET', KEYS[1], 1, 'EX', ARGV[1])
        count = 1
    end
    local values = {count}
    for i = 2, #KEYS do values[i] = redis.call('GET', KEYS[i]) end
    return values
    """

    @_guarded
    def incr_window(self, key: str, timeout: int, read: Iterable[str] = ()) -> tuple[int, dict[str, Any]]:
        """``SQLiteCache.incr_window`` in one round trip (a script): the rate limiter counts a request
        and reads the permission generation in the same call."""
        names = list(read)
        client = self.client.get_client(write=True)
        keys = [self.client.make_key(key), *(self.client.make_key(name) for name in names)]
        try:
            script = self._incr_window_script
        except AttributeError:
            script = self._incr_window_script = client.register_script(self._INCR_WINDOW)
        count, *values = script(keys=keys, args=[int(timeout)], client=client)
        found = {
            name: self.client.decode(value) for name, value in zip(names, values, strict=False) if value is not None
        }
        return int(count), found

    def ping(self) -> None:
        """``PING`` the server, bypassing the breaker (the probe). Raises when it does not answer.

        Untraced: during an outage the probe runs every ``BREAKER_SECONDS`` on its own thread, and each
        PING would be a root span in the tracing backend (and in whichever request's trace is open)."""
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        with suppress_instrumentation():
            self.client.get_client(write=True).ping()


for _name in (
    "get", "get_many", "set", "set_many", "add", "incr", "decr", "delete", "delete_many",
    "delete_pattern", "has_key", "touch", "clear", "ttl", "expire",
):  # fmt: skip
    setattr(RedisCache, _name, _guarded(getattr(DjangoRedisCache, _name)))
