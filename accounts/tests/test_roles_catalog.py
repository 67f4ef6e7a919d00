"""The seeded catalog and system roles, inheritance, and superuser semantics."""

import pytest

from accounts import catalog
from accounts.backends import user_codes
from accounts.models import Permission, Role

ISSUE_2_ROLES = {
    "super_admin": set(catalog.ALL),
    "admin": {
        "agent:create", "agent:read", "agent:update", "agent:delete",
        "orchestra:create", "orchestra:read", "orchestra:update", "orchestra:delete", "orchestra:control",
        "trust:read", "trust:verify", "system:config", "system:monitor",
        "user:create", "user:read", "user:update", "audit:read",
    },
    "operator": {
        "agent:create", "agent:read", "agent:update", "agent:execute",
        "orchestra:read", "orchestra:update", "orchestra:control", "trust:read", "trust:verify", "system:monitor",
    },
    "developer": {
        "agent:create", "agent:read", "agent:update", "agent:execute", "orchestra:read", "trust:read", "system:monitor",
    },
    "analyst": {"agent:read", "orchestra:read", "trust:read", "system:monitor", "audit:read", "audit:export"},
    "viewer": {"agent:read", "orchestra:read", "trust:read", "system:monitor"},
    "guest": {"agent:read", "system:monitor"},
}  # fmt: skip


@pytest.mark.django_db
def test_it_seeds_the_22_permission_codes_each_with_a_description():
    assert Permission.objects.count() == 22
    assert set(Permission.objects.values_list("code", flat=True)) == set(catalog.ALL)
    assert not Permission.objects.filter(description="").exists()


@pytest.mark.django_db
def test_it_seeds_exactly_the_seven_system_roles():
    assert set(Role.objects.filter(is_system=True).values_list("name", flat=True)) == set(ISSUE_2_ROLES)


@pytest.mark.parametrize("role", sorted(ISSUE_2_ROLES))
def test_it_gives_each_system_role_exactly_the_issues_permissions(role, user_factory):
    user = user_factory(roles=[role])
    assert set(user_codes(user)) == ISSUE_2_ROLES[role]
    for code in catalog.ALL:
        assert user.has_perm(code) is (code in ISSUE_2_ROLES[role])


def test_it_gives_a_superuser_every_code_and_every_django_permission(user_factory):
    user = user_factory(is_superuser=True)
    assert set(user_codes(user)) == set(catalog.ALL)
    assert user.has_perm("system:admin")
    assert user.has_perm("accounts.delete_role")


def test_it_gives_a_role_its_parents_permissions_transitively(user_factory, role_factory):
    base = role_factory(permissions=["audit:export"])
    middle = role_factory(permissions=["trust:manage"], parents=[base.name])
    top = role_factory(parents=[middle.name, "guest"])
    user = user_factory(roles=[top.name])
    assert set(user_codes(user)) == {"audit:export", "trust:manage", "agent:read", "system:monitor"}


def test_it_adds_extra_permissions_to_the_roles(user_factory):
    user = user_factory(roles=["guest"], extra_permissions=["audit:read"])
    assert set(user_codes(user)) == {"agent:read", "system:monitor", "audit:read"}


def test_it_gives_an_inactive_user_nothing(user_factory):
    user = user_factory(roles=["admin"], is_active=False)
    assert user_codes(user) == frozenset()
    assert not user.has_perm("agent:read")


def test_it_answers_django_model_permissions_from_roles(user_factory):
    viewer = user_factory(roles=["viewer"], extra_permissions=["user:read"])
    assert viewer.has_perm("accounts.view_user")
    assert not viewer.has_perm("accounts.change_user")
    assert viewer.has_module_perms("accounts")
