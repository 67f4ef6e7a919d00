"""When the shared cache (Redis) cannot be reached: identity checks come from the database, identity
changes are refused with 503 (so no stale entry outlives the outage), and nothing answers 500.

The cache here is a Redis client pointed at a port where nothing listens (connection refused), swapped
in mid-test; tests/test_redis_outage.py kills and stops a real redis-server under gunicorn.
"""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from accounts import backends
from accounts.exceptions import PermissionCacheUnavailable
from accounts.models import ApiKey, Role, User
from accounts.services import api_key_create
from audit.models import AuditEvent
from tests.servers import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def keyed(user_with_role):
    """An operator with a key, both cached while the cache still works."""
    user = user_with_role("op", role="operator", is_staff=True)
    _key, raw = api_key_create(owner=user, name="op")
    return user, {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def cache_down(settings):
    """Swap the default cache for an unreachable Redis; ``cache_down(fail_open=False)`` to fail closed."""

    def down(*, fail_open: bool = True):
        settings.CACHES = {
            **settings.CACHES,
            "default": {
                "BACKEND": "symphony.caches.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
            },
        }
        settings.SYMPHONY_RATELIMIT_FAIL_OPEN = fail_open

    return down


def test_it_authenticates_from_the_database_and_serves_unlimited_when_failing_open(api, keyed, cache_down):
    _user, headers = keyed
    assert api.get("/api/v1/me/", headers=headers).status_code == 200  # warm
    cache_down()

    answers = [api.get("/api/v1/me/", headers=headers) for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5
    assert answers[0].json()["username"] == "op"
    assert "agent:execute" in answers[0].json()["permissions"]
    assert "X-RateLimit-Limit" not in answers[0]


def test_it_still_rejects_bad_keys_from_the_database(api, keyed, cache_down):
    user, headers = keyed
    ApiKey.objects.filter(owner=user).update(revoked_at="2020-01-01T00:00:00Z")
    cache_down()

    answer = api.get("/api/v1/me/", headers=headers)
    unknown = api.get("/api/v1/me/", headers={"X-API-Key": "sym_000000000000_" + "x" * 43})

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "api_key_revoked"
    assert unknown.status_code == 401


def test_it_refuses_identity_changes_with_503_and_writes_nothing(api, keyed, cache_down):
    user, headers = keyed
    prefix = ApiKey.objects.get(owner=user).prefix
    cache_down()

    revoke = api.post(f"/api/v1/api-keys/{prefix}/revoke/", headers=headers)

    assert revoke.status_code == 503
    assert revoke["Retry-After"] == "5"
    assert revoke.json()["error"]["code"] == "cache_unavailable"
    assert ApiKey.objects.get(prefix=prefix).revoked_at is None
    assert not AuditEvent.objects.filter(event_type="apikey.revoked").exists()
    assert api.get("/api/v1/me/", headers=headers).status_code == 200  # nothing changed, so still valid


def test_it_refuses_changes_that_bypass_the_services_too(user_with_role, cache_down):
    user = User.objects.get(pk=user_with_role("bob", role="viewer").pk)  # as another request loads it
    cache_down()

    admin = Role.objects.get(name="admin")
    for change in (lambda: user.roles.add(admin), user.save, user.delete):
        with pytest.raises(PermissionCacheUnavailable), transaction.atomic():  # a savepoint per attempt
            change()

    assert list(user.roles.values_list("name", flat=True)) == ["viewer"]


def test_it_keeps_the_admin_working_from_the_database(client, keyed, cache_down):
    user, _headers = keyed
    user.set_password("correct horse battery")
    user.save()
    cache_down()

    login = client.post("/admin/login/", {"username": "op", "password": "correct horse battery"})
    page = client.get("/admin/agents/task/")

    assert login.status_code == 302
    assert page.status_code == 200


def test_it_answers_503_not_500_when_the_admin_changes_a_role_during_the_outage(client, user_with_role, cache_down):
    user_with_role("root", role="super_admin", is_staff=True, is_superuser=True)
    client.login(username="root", password="correct horse battery")
    viewer = user_with_role("vic", role="viewer")
    cache_down()

    answer = client.post(
        f"/admin/accounts/user/{viewer.pk}/change/",
        {"username": "vic", "is_active": "on", "roles": [str(Role.objects.get(name="analyst").pk)]},
    )

    assert answer.status_code == 503
    assert answer["Retry-After"] == "5"
    assert list(viewer.roles.values_list("name", flat=True)) == ["viewer"]


def test_it_reports_ready_but_degraded_when_failing_open(client, cache_down):
    cache_down()

    answer = client.get("/health/ready")

    assert answer.status_code == 200
    assert answer.json()["status"] == "degraded"
    assert answer.json()["degraded"] == ["cache"]


def test_it_answers_503_with_retry_after_when_failing_closed(api, keyed, client, cache_down):
    _user, headers = keyed
    cache_down(fail_open=False)

    answer = api.get("/api/v1/me/", headers=headers)
    ready = client.get("/health/ready")

    assert answer.status_code == 503
    assert answer["Retry-After"] == "5"
    assert answer.json()["error"]["code"] == "rate_limiter_unavailable"
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["cache"]


def test_it_invalidates_everything_cached_before_an_outage_once_the_cache_answers_again(
    api, keyed, settings, cache_down
):
    """A change whose after-commit invalidation was lost (the cache died between commit and bump)
    must not stay hidden behind an entry cached before: the process bumps the generation first."""
    user, headers = keyed
    assert api.get("/api/v1/me/", headers=headers).status_code == 200  # cached under generation N
    working = settings.CACHES
    before = backends.permissions_generation()
    cache_down()
    assert api.get("/api/v1/me/", headers=headers).status_code == 200  # this process notices the outage
    settings.CACHES = working
    ApiKey.objects.filter(owner=user).update(revoked_at="2020-01-01T00:00:00Z")  # a bump that never happened

    answer = api.get("/api/v1/me/", headers=headers)

    assert answer.status_code == 401
    assert backends.permissions_generation() > before


def test_it_takes_a_key_created_by_an_agent_registration_during_the_outage(api, user_with_role, cache_down):
    """Creating rows needs no invalidation (nothing is cached about them): agents can still register."""
    owner = user_with_role("fleet", role="operator")
    cache_down()

    _key, raw = api_key_create(owner=owner, name="new", scopes=["agent:read"])
    answer = api.get("/api/v1/me/", headers={"X-API-Key": raw})

    assert answer.status_code == 200
    assert json.loads(answer.content)["permissions"] == ["agent:read"]
