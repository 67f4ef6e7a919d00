"""No secret in any log line of a real gunicorn: known secrets in ``DATABASE_URL``, ``REDIS_URL``,
``SECRET_KEY`` and a user's password, then failures that log (a failing user creation, a Redis
a PostgreSQL outage and stall, a Redis outage, a bad Host header), then a grep of every line it wrote."""

from __future__ import annotations

import json

import pytest
import requests

from tests.servers import private_redis

pytestmark = pytest.mark.slow

DB_PASSWORD = "Db-Secret-4f2a9c"
REDIS_PASSWORD = "Redis-Secret-7b1e3d"
SECRET_KEY = "Secret-Key-0c5d8e-" + "k" * 40
USER_PASSWORD = "User-Plaintext-91ab6f"


def _create_user(app, username: str) -> requests.Response:
    return requests.post(
        f"{app.url}/api/v1/users/",
        json={"username": username, "password": USER_PASSWORD},
        headers={"Authorization": f"Bearer {app.api_key}", "Connection": "close"},
        timeout=60,
    )


def test_it_writes_no_secret_in_any_line_whatever_fails(start_app, private_postgres):
    with private_redis(password=REDIS_PASSWORD) as (redis_server, redis_port):
        redis_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0"
        env = {"REDIS_URL": redis_url, "SECRET_KEY": SECRET_KEY, "LOG_LEVEL": "INFO"}
        with start_app(db_password=DB_PASSWORD, **env) as app:
            assert _create_user(app, "alice").status_code == 201
            assert _create_user(app, "alice").status_code == 400  # a failing creation: the name is taken
            bad_host = requests.get(f"{app.url}/admin/", headers={"Host": "evil.example"}, timeout=60)

            private_postgres.stop()
            stopped = _create_user(app, "carol")
            private_postgres.start()
            private_postgres.freeze()
            try:
                stalled = _create_user(app, "dave")
            finally:
                private_postgres.thaw()

            redis_server.kill()  # last: what a Redis outage answers is not this test's business
            redis_server.wait()
            without_redis = _create_user(app, "bob")
        output = app.log.read_text()

    assert bad_host.status_code == 400
    assert without_redis.status_code >= 200  # answered, whatever the cache outage policy says
    assert stopped.status_code == stalled.status_code == 503
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "database_unavailable" for line in lines)
    [host_line] = [line for line in lines if line.get("logger") == "django.security.DisallowedHost"]
    assert host_line["level"] == "warning" and "exception" not in host_line
    for secret in (DB_PASSWORD, REDIS_PASSWORD, SECRET_KEY, USER_PASSWORD):
        assert secret not in output, f"{secret} appears in the server's output"
