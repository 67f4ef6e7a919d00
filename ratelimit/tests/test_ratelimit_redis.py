"""The limiter against real Redis: shared between processes, readable by django-ratelimit, and what
happens when Redis cannot be reached (fail open or fail closed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django_ratelimit.core import get_usage

from observability.registry import DEGRADED, UNHEALTHY, health_checks
from ratelimit import limiter

pytestmark = [pytest.mark.django_db, pytest.mark.urls("symphony.tests.urls")]

NOT_FOUND = "/api/v1/not-a-resource/"  # answered by the full stack without touching the database
DEAD_REDIS = "redis://127.0.0.1:18601/8"  # a port of our range where nothing listens


@pytest.fixture(autouse=True)
def _small_limits(settings):
    # A day-long window: the other process runs in real time, so a short window could turn over mid-test.
    settings.SYMPHONY_RATELIMIT_DEFAULT = "3/d"
    settings.SYMPHONY_RATELIMIT_OVERRIDES = {}


@pytest.mark.redis
def test_it_counts_in_redis_where_django_ratelimit_reads_it(api, rf):
    assert caches["default"].__class__.__name__ == "RedisCache"
    api.get(NOT_FOUND)
    api.get(NOT_FOUND)

    request = rf.get(NOT_FOUND, REMOTE_ADDR="127.0.0.1")
    usage = get_usage(request, group="api", key=lambda _group, _request: "ip:127.0.0.1", rate="3/d")
    assert usage["count"] == 2
    assert usage["limit"] == 3


@pytest.mark.redis
def test_it_shares_one_limit_between_processes(api):
    """Another process (a second worker) spends two of the three requests; this one gets one."""
    script = textwrap.dedent(
        f"""
        import django
        django.setup()
        from django.test import Client
        client = Client()
        print(",".join(str(client.get("{NOT_FOUND}").status_code) for _ in range(2)))
        """
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "symphony.settings",
        "SYMPHONY_RATELIMIT_DEFAULT": "3/d",
        "CACHE_KEY_PREFIX": django_settings.CACHES["default"]["KEY_PREFIX"],
        "ALLOWED_HOSTS": "testserver",
    }
    other = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)

    assert other.stdout.strip().splitlines()[-1] == "404,404"
    assert api.get(NOT_FOUND)["X-RateLimit-Remaining"] == "0"
    assert api.get(NOT_FOUND).status_code == 429


@pytest.fixture
def dead_limiter(settings):
    """Counters in a Redis that cannot be reached (connection refused), the rest of the app unaffected."""
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit-dead": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        },
    }
    settings.RATELIMIT_USE_CACHE = "ratelimit-dead"
    limiter._last_warning = 0.0
    return settings


def test_it_serves_without_limits_when_redis_is_down_and_failing_open(api, dead_limiter, capsys, caplog):
    dead_limiter.SYMPHONY_RATELIMIT_FAIL_OPEN = True
    answers = [api.get("/api/test/catalog/") for _ in range(5)]

    assert {a.status_code for a in answers} == {200}
    assert "X-RateLimit-Limit" not in answers[0]
    captured = capsys.readouterr()
    assert "rate_limiter_unavailable" in captured.out + captured.err + caplog.text
    assert health_checks()["ratelimit"].func().status == DEGRADED


def test_it_answers_503_when_redis_is_down_and_failing_closed(api, dead_limiter):
    dead_limiter.SYMPHONY_RATELIMIT_FAIL_OPEN = False
    answer = api.get("/api/test/catalog/")

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "rate_limiter_unavailable"
    assert answer["Retry-After"] == "5"
    assert health_checks()["ratelimit"].func().status == UNHEALTHY


def test_it_keeps_the_admin_login_working_when_redis_is_down_and_failing_open(client, dead_limiter):
    dead_limiter.SYMPHONY_RATELIMIT_FAIL_OPEN = True
    answer = client.post("/admin/login/", {"username": "x", "password": "y"})

    assert answer.status_code == 200


def test_it_reports_a_healthy_limiter(settings):
    assert health_checks()["ratelimit"].func().status == "healthy"


def test_it_marks_health_degraded_while_failing_open(client, dead_limiter):
    dead_limiter.SYMPHONY_RATELIMIT_FAIL_OPEN = True
    component = client.get("/health").json()["components"]["ratelimit"]

    assert component["status"] == DEGRADED
    assert "unreachable" in component["message"]
