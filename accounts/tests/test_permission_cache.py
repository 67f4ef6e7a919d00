"""The effective-permission cache: warm checks touch no database, every change invalidates it."""

import pytest

from accounts import services
from accounts.backends import user_codes
from accounts.models import Role, User

pytestmark = pytest.mark.django_db


def fresh(user: User) -> User:
    """The same user as a new request would load it (no per-object memo)."""
    return User.objects.get(pk=user.pk)


def test_it_answers_a_warm_has_perm_without_any_query(user_factory, django_assert_num_queries):
    user = user_factory(roles=["operator"])
    assert fresh(user).has_perm("agent:execute")  # warms the shared cache
    again = fresh(user)
    with django_assert_num_queries(0):
        assert again.has_perm("agent:execute")
        assert again.has_perm("agents.change_task")
        assert not again.has_perm("user:delete")


def test_it_serves_a_warm_api_key_request_without_any_query(
    client, api_key_factory, user_factory, django_assert_num_queries
):
    key = api_key_factory(owner=user_factory(roles=["viewer"]), scopes=["agent:read"])
    headers = {"Authorization": f"Bearer {key.raw}"}
    assert client.get("/api/v1/me/", headers=headers).status_code == 200
    with django_assert_num_queries(0):
        assert client.get("/api/v1/me/", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("holds_role", "role_perms", "change"),
    [
        (False, ["audit:read"], lambda actor, user, role: services.role_grant(actor=actor, user=user, role=role)),
        (
            False,
            [],
            lambda actor, user, role: services.permission_grant(actor=actor, user=user, permission="audit:read"),
        ),
        (True, [], lambda actor, user, role: services.role_update(actor=actor, role=role, permissions=["audit:read"])),
        (True, [], lambda actor, user, role: services.role_update(actor=actor, role=role, parents=["analyst"])),
    ],
    ids=["role-granted", "permission-granted", "role-permission-added", "parent-added"],
)
def test_it_sees_a_grant_on_the_next_check(
    super_admin, user_factory, role_factory, holds_role, role_perms, change, django_capture_on_commit_callbacks
):
    role = role_factory(permissions=role_perms)
    user = user_factory(roles=[role.name] if holds_role else [])
    assert not fresh(user).has_perm("audit:read")  # cached as "no"
    with django_capture_on_commit_callbacks(execute=True):
        change(super_admin, user, role)
    assert fresh(user).has_perm("audit:read")


def test_it_sees_a_revocation_on_the_very_next_request(
    client, super_admin, user_factory, api_key_factory, django_capture_on_commit_callbacks
):
    user = user_factory(roles=["viewer"], extra_permissions=["user:read"])
    key = api_key_factory(owner=user, scopes=["user:read"])
    headers = {"Authorization": f"Bearer {key.raw}"}
    assert client.get("/api/v1/users/", headers=headers).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        services.permission_revoke(actor=super_admin, user=user, permission="user:read")
    assert client.get("/api/v1/users/", headers=headers).status_code == 403


def test_it_drops_everything_when_a_user_is_deactivated(super_admin, user_factory, django_capture_on_commit_callbacks):
    user = user_factory(roles=["viewer"])
    assert fresh(user).has_perm("agent:read")
    with django_capture_on_commit_callbacks(execute=True):
        services.user_update(actor=super_admin, user=user, is_active=False)
    assert not fresh(user).has_perm("agent:read")


def test_it_invalidates_even_a_raw_orm_change_when_it_commits(user_factory, django_capture_on_commit_callbacks):
    user = user_factory(roles=["guest"])
    assert user_codes(fresh(user)) == {"agent:read", "system:monitor"}
    with django_capture_on_commit_callbacks(execute=True):
        Role.objects.get(name="guest").permissions.add(*Role.objects.get(name="analyst").permissions.all())
    assert "audit:export" in user_codes(fresh(user))


@pytest.fixture
def redis_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Redis commands this process sends (the client still sends them)."""
    import redis.client

    sent: list[str] = []
    send = redis.client.Redis.execute_command

    def counting(self: redis.client.Redis, *args: object, **options: object) -> object:
        sent.append(str(args[0]))
        return send(self, *args, **options)

    monkeypatch.setattr(redis.client.Redis, "execute_command", counting)
    return sent


@pytest.mark.redis
def test_it_counts_and_authenticates_a_warm_api_key_request_in_one_redis_round_trip(
    client, api_key_factory, user_factory, redis_commands, django_assert_num_queries
):
    key = api_key_factory(owner=user_factory(roles=["viewer"]), scopes=["agent:read"])
    headers = {"Authorization": f"Bearer {key.raw}"}
    assert client.get("/api/v1/me/", headers=headers).status_code == 200
    redis_commands.clear()
    with django_assert_num_queries(0):
        response = client.get("/api/v1/me/", headers=headers)
    assert response.status_code == 200
    assert response.json()["username"] == key.owner.username
    assert len(redis_commands) == 1, redis_commands  # the rate-limit count, reading the generation with it


def test_a_remembered_key_is_counted_once_per_request_even_when_its_memory_went_stale(
    client, api_key_factory, user_factory, django_capture_on_commit_callbacks
):
    key = api_key_factory(owner=user_factory(roles=["viewer"]), scopes=["agent:read"], rate_limit="3/m")
    headers = {"Authorization": f"Bearer {key.raw}"}
    answers = [client.get("/api/v1/me/", headers=headers) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):  # someone else's change: every memory is stale
        services.role_grant(actor=None, user=user_factory(), role=Role.objects.get(name="viewer"))
    answers.append(client.get("/api/v1/me/", headers=headers))
    assert [(a.status_code, a["X-RateLimit-Remaining"]) for a in answers] == [(200, "2"), (200, "1"), (200, "0")]
    assert client.get("/api/v1/me/", headers=headers).status_code == 429


def test_a_revoked_key_is_counted_against_its_sender_from_the_next_request(
    client, api_key_factory, django_capture_on_commit_callbacks, settings
):
    settings.SYMPHONY_RATELIMIT_DEFAULT = "5/m"
    key = api_key_factory(rate_limit="100/m")
    headers = {"Authorization": f"Bearer {key.raw}"}
    assert client.get("/api/v1/me/", headers=headers)["X-RateLimit-Limit"] == "100"
    assert client.get("/api/v1/me/", headers=headers)["X-RateLimit-Limit"] == "100"  # remembered
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(actor=key.owner, key=key)
    response = client.get("/api/v1/me/", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"
    assert response["X-RateLimit-Limit"] == "5"  # the address's limit, not the key's
