"""Changes reach every gunicorn worker at once, on the embedded default (the shared SQLite cache) and on
Redis: a revoked key, a changed role, a demoted and a deactivated user.

Each scenario warms every worker first (so a per-process cache would hold the old answer), makes the
change through one request, then sends the very next 20 requests with ``Connection: close``, several at
a time so they spread over the workers; all 20 must see the change. gunicorn's access log (with the
worker pid and a phase header) shows which workers served them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.servers import ROOT, app_env, free_port, gunicorn_command, running, wait_for

pytestmark = pytest.mark.slow

WORKERS = 3
AFTER = 20  # requests checked right after each change


class Install:
    """A throwaway install served by gunicorn with ``WORKERS`` workers, administered over its API."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.tmp, self.port = tmp_path, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "gunicorn.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "OTEL_"))}
        self.env = {
            **app_env(tmp_path),
            **{k: v for k, v in clean.items() if k == "PATH"},
            "SYMPHONY_RATELIMIT_DEFAULT": "1000000/15m",  # this test counts answers, not limits
            "LOG_LEVEL": "INFO",  # gunicorn's access log (with the worker pid) logs at INFO
            "GUNICORN_ACCESSLOG": "-",
            "PYTHONUNBUFFERED": "1",  # the access log is read while the server runs
            **env,
        }
        for name in ("DATABASE_URL", "REDIS_URL"):
            if name not in env:
                self.env.pop(name, None)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return result.stdout

    def __enter__(self) -> Install:
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("ensure_admin")
        self.admin = {"Authorization": f"Bearer {self.manage('create_api_key', 'admin', '--name', 'root').strip()}"}
        command = [
            *gunicorn_command(self.port, workers=WORKERS),
            "--access-logformat",
            "pid=%(p)s phase=%({x-phase}i)s",
        ]
        self._server = running(command, env=self.env, log=self.log)
        process = self._server.__enter__()
        wait_for(f"{self.url}/health/startup", timeout=60, process=process)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)

    def call(self, method: str, path: str, headers: dict[str, str], json: dict | None = None, phase: str = "setup"):
        headers = {"Connection": "close", "X-Phase": phase, **headers}
        return requests.request(method, f"{self.url}{path}", headers=headers, json=json, timeout=30)

    def burst(self, path: str, headers: dict[str, str], *, count: int, phase: str) -> list[int]:
        """``count`` GETs, four at a time (so every worker takes some), each on a fresh connection."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda _: self.call("GET", path, headers, phase=phase).status_code, range(count)))

    def workers_of(self, phase: str) -> Counter[str]:
        return Counter(re.findall(rf"pid=<?(\d+)>? phase={re.escape(phase)}\b", self.log.read_text()))

    def user_with_key(self, username: str, roles: list[str], scopes: list[str] | None = None) -> dict[str, str]:
        created = self.call("POST", "/api/v1/users/", self.admin, {"username": username, "roles": roles})
        assert created.status_code == 201, created.text
        body = {"name": username, "owner": username, **({"scopes": scopes} if scopes else {})}
        key = self.call("POST", "/api/v1/api-keys/", self.admin, body)
        assert key.status_code == 201, key.text
        return {"Authorization": f"Bearer {key.json()['api_key']}", "_prefix": key.json()["prefix"]}


def _scenarios(install: Install) -> dict[str, dict]:
    """Each change, and what the 20 requests after it must all answer. Returns the figures."""
    figures = {}

    def check(name: str, path: str, headers: dict[str, str], change, before: int, after: int) -> None:
        headers = {k: v for k, v in headers.items() if not k.startswith("_")}
        warm = install.burst(path, headers, count=3 * WORKERS * 2, phase=f"{name}-warm")
        assert set(warm) == {before}, (name, warm)
        assert len(install.workers_of(f"{name}-warm")) == WORKERS, "every worker cached the old answer"
        response = change()
        assert response.status_code < 300, (name, response.status_code, response.text)
        answers = install.burst(path, headers, count=AFTER, phase=f"{name}-after")
        figures[name] = {
            "expected": after,
            "statuses": dict(Counter(answers)),
            "stale": sum(status != after for status in answers),
            "workers": len(install.workers_of(f"{name}-after")),
        }

    revoked = install.user_with_key("revoked", ["viewer"])
    check(
        "revoke-key",
        "/api/v1/me/",
        revoked,
        lambda: install.call("POST", f"/api/v1/api-keys/{revoked['_prefix']}/revoke/", install.admin),
        before=200,
        after=401,
    )

    role = install.call("POST", "/api/v1/roles/", install.admin, {"name": "auditors", "permissions": ["agent:read"]})
    assert role.status_code == 201, role.text
    # The key may read the audit trail; its owner may not until the role grants it.
    granted = install.user_with_key("granted", ["auditors"], scopes=["agent:read", "audit:read"])
    check(
        "change-role",
        "/api/v1/audit-events/",
        granted,
        lambda: install.call("PATCH", "/api/v1/roles/auditors/", install.admin, {"permissions": ["audit:read"]}),
        before=403,
        after=200,
    )

    demoted = install.user_with_key("demoted", ["admin"])
    check(
        "demote-user",
        "/api/v1/users/",
        demoted,
        lambda: install.call("PATCH", "/api/v1/users/demoted/", install.admin, {"roles": ["viewer"]}),
        before=200,
        after=403,
    )

    deactivated = install.user_with_key("deactivated", ["operator"])
    check(
        "deactivate-user",
        "/api/v1/me/",
        deactivated,
        lambda: install.call("PATCH", "/api/v1/users/deactivated/", install.admin, {"is_active": False}),
        before=200,
        after=401,
    )
    return figures


def _assert_fresh(figures: dict[str, dict]) -> None:
    print(figures)  # the figures, with -s
    for name, figure in figures.items():
        assert figure["stale"] == 0, (name, figure)
        assert figure["workers"] >= 2, (name, "the requests after the change did not spread over the workers")


def test_every_worker_sees_each_change_at_once_on_the_embedded_default(tmp_path):
    with Install(tmp_path) as install:
        figures = _scenarios(install)

    _assert_fresh(figures)


@pytest.mark.redis
def test_every_worker_sees_each_change_at_once_on_redis(tmp_path):
    import redis

    prefix = f"shared-state-{uuid.uuid4().hex[:8]}"
    try:
        with Install(tmp_path, REDIS_URL=os.environ["REDIS_URL"], CACHE_KEY_PREFIX=prefix) as install:
            assert install.call("GET", "/health", {}).json()["components"]["redis"]["status"] == "healthy"
            figures = _scenarios(install)
    finally:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)

    _assert_fresh(figures)
