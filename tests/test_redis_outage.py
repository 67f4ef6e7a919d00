"""A Redis outage is not an API outage: gunicorn (2 workers) on a private redis-server that the test
kills (connection refused) or SIGSTOPs (connections accepted, never answered), under a steady load.

Failing open (the default): every request is answered from the database (200, unlimited), identity
changes are refused with 503 + Retry-After so no cached entry outlives the outage, ``/health/ready``
stays 200 "degraded", and everything recovers by itself. Failing closed: 503 with Retry-After.
Never a 500. bench/bench_redis_outage.py counts the answers of a 10 s outage for the figures.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter

import pytest

from tests.servers import Install, Load, RedisServer

pytestmark = pytest.mark.slow

OUTAGE = 3.0  # seconds the outage is held (not a timing assertion: only what is answered meanwhile counts)


def _hold(seconds: float) -> None:
    time.sleep(seconds)  # keeping Redis down under load for a while is the point of the test


def _until(predicate, *, timeout: float = 30.0):
    """Poll ``predicate`` until it returns something truthy (recovery is automatic, not instant)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)  # polling for recovery
    raise AssertionError("did not recover")


@pytest.fixture
def redis_server(tmp_path):
    with RedisServer(tmp_path) as server:
        yield server


def _install(tmp_path, redis_server, *, fail_open: bool) -> Install:
    return Install(
        tmp_path,
        workers=2,
        REDIS_URL=redis_server.url,
        SYMPHONY_RATELIMIT_FAIL_OPEN="true" if fail_open else "false",
        REDIS_CONNECT_TIMEOUT="0.5",
        REDIS_SOCKET_TIMEOUT="0.5",
    )


def _down(redis_server: RedisServer, outage: str) -> None:
    redis_server.kill() if outage == "kill" else redis_server.stop()


def _up(redis_server: RedisServer, outage: str) -> None:
    redis_server.start() if outage == "kill" else redis_server.cont()


def test_it_serves_every_request_from_the_database_while_redis_is_down_and_failing_open(tmp_path, redis_server):
    with _install(tmp_path, redis_server, fail_open=True) as install:
        user = install.user_with_key("steady", ["operator"])
        headers = {"Authorization": user["Authorization"]}
        assert "X-RateLimit-Limit" in install.call("GET", "/api/v1/me/", headers).headers
        seen = {}
        with Load(f"{install.url}/api/v1/me/", headers) as load:
            for outage in ("kill", "sigstop"):  # refused connections, then connections never answered
                _hold(0.5)
                started = time.monotonic()
                _down(redis_server, outage)
                _hold(OUTAGE / 2)
                ready = install.call("GET", "/health/ready", {})
                refused = install.call("POST", f"/api/v1/api-keys/{user['_prefix']}/revoke/", install.admin)
                login = install.call("GET", "/admin/login/", {})
                _hold(OUTAGE / 2)
                ended = time.monotonic()
                _up(redis_server, outage)
                limited = _until(lambda: install.call("GET", "/api/v1/me/", headers).headers.get("X-RateLimit-Limit"))
                during = Counter(status for _t, status, _r in load.between(started, ended))
                seen[outage] = (during, ready, refused, login, limited)

    for outage, (during, ready, refused, login, limited) in seen.items():
        assert set(during) == {200}, (outage, during)  # not one 500, 503 or connection error
        assert ready.status_code == 200, outage
        assert ready.json()["status"] == "degraded", outage
        assert refused.status_code == 503, outage
        assert refused.headers["Retry-After"] == "5", outage
        assert login.status_code == 200, outage
        assert limited, outage  # the limiter counts again: recovered without a restart
    assert all(status == 200 for _t, status, _r in load.answers), Counter(s for _t, s, _r in load.answers)


def test_it_answers_503_with_retry_after_while_redis_is_down_and_failing_closed(tmp_path, redis_server):
    with _install(tmp_path, redis_server, fail_open=False) as install:
        headers = {"Authorization": install.user_with_key("steady", ["operator"])["Authorization"]}
        seen = {}
        with Load(f"{install.url}/api/v1/me/", headers) as load:
            for outage in ("kill", "sigstop"):
                _hold(0.5)
                started = time.monotonic()
                _down(redis_server, outage)
                _hold(OUTAGE / 2)
                ready = install.call("GET", "/health/ready", {})
                _hold(OUTAGE / 2)
                ended = time.monotonic()
                _up(redis_server, outage)
                _until(lambda: install.call("GET", "/api/v1/me/", headers).status_code == 200)
                seen[outage] = (load.between(started, ended), ready)

    for outage, (during, ready) in seen.items():
        statuses = Counter(status for _t, status, _r in during)
        assert set(statuses) <= {200, 503}, (outage, statuses)  # requests already past the limiter finish
        assert statuses[503] > statuses[200], (outage, statuses)
        assert all(retry == "5" for _t, status, retry in during if status == 503), outage
        assert ready.status_code == 503, outage
    assert 500 not in Counter(status for _t, status, _r in load.answers)


@pytest.mark.parametrize("fail_open", [True, False], ids=["failing-open", "failing-closed"])
def test_it_trusts_no_entry_cached_before_a_sigstop_once_redis_answers_again(tmp_path, redis_server, fail_open):
    """The freshness hole: a SIGSTOP'd Redis keeps every entry. A revocation refused during the outage
    changes nothing; one that reached the database all the same (here written straight into it, as a
    bump lost after commit would leave it) must not be hidden by the old entry once Redis is back.
    Failing closed, the outage meets only the rate limiter (every request is refused before it reads a
    permission), and the workers must still count it as losing the permission cache."""
    with _install(tmp_path, redis_server, fail_open=fail_open) as install:
        user = install.user_with_key("target", ["operator"])
        headers = {"Authorization": user["Authorization"]}
        assert install.burst("/api/v1/me/", headers, count=8, phase="warm") == [200] * 8  # cached in Redis
        with Load(f"{install.url}/api/v1/me/", headers, threads=2):  # every worker notices the outage
            redis_server.stop()
            _hold(OUTAGE / 2)
            refused = install.call("POST", f"/api/v1/api-keys/{user['_prefix']}/revoke/", install.admin)
            with sqlite3.connect(tmp_path / "var" / "symphony.sqlite3") as db:
                db.execute(
                    "UPDATE accounts_apikey SET revoked_at = '2020-01-01 00:00:00' WHERE prefix = ?", (user["_prefix"],)
                )
            during = install.burst("/api/v1/me/", headers, count=8, phase="during")
            redis_server.cont()
            _until(lambda: install.call("GET", "/health/ready", {}).json()["status"] == "ok")
            after = install.burst("/api/v1/me/", headers, count=20, phase="after")

    assert refused.status_code == 503
    assert during == ([401] if fail_open else [503]) * 8  # from the database, or refused by the limiter
    assert after == [401] * 20  # not the entry Redis kept from before the outage
