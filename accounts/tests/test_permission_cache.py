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
