"""Changes reach every gunicorn worker at once, on the embedded default (the shared SQLite cache) and on
Redis: a revoked key, a changed role, a demoted and a deactivated user.

Each scenario warms every worker first (so a per-process cache would hold the old answer), makes the
change through one request, then sends the very next 20 requests with ``Connection: close``, several at
a time so they spread over the workers; all 20 must see the change. gunicorn's access log (with the
worker pid and a phase header) shows which workers served them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter

import pytest

from tests.servers import Install

pytestmark = pytest.mark.slow

WORKERS = 3
AFTER = 20  # requests checked right after each change


def _scenarios(install: Install) -> dict[str, dict]:
    """Each change, and what the 20 requests after it must all answer. Returns the figures."""
    figures = {}

    def check(name: str, path: str, headers: dict[str, str], change, before: int, after: int) -> None:
        headers = {k: v for k, v in headers.items() if not k.startswith("_")}
        warm: list[int] = []
        deadline = time.monotonic() + 60
        # The kernel, not us, picks the worker, and a worker still booting takes nothing: burst until
        # every worker has answered (and so cached the old answer).
        while time.monotonic() < deadline:
            warm += install.burst(path, headers, count=6 * WORKERS, phase=f"{name}-warm")
            if len(install.workers_of(f"{name}-warm")) == WORKERS:
                break
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
    with Install(tmp_path, workers=WORKERS) as install:
        figures = _scenarios(install)

    _assert_fresh(figures)


@pytest.mark.redis
def test_every_worker_sees_each_change_at_once_on_redis(tmp_path):
    import redis

    prefix = f"shared-state-{uuid.uuid4().hex[:8]}"
    try:
        with Install(tmp_path, workers=WORKERS, REDIS_URL=os.environ["REDIS_URL"], CACHE_KEY_PREFIX=prefix) as install:
            assert install.call("GET", "/health", {}).json()["components"]["redis"]["status"] == "healthy"
            figures = _scenarios(install)
    finally:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)

    _assert_fresh(figures)
