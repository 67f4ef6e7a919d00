"""The role map, the groups claim and the role sync, without a provider."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.models import RoleBinding, User
from accounts.services.sso import sso_role_bindings_sync
from accounts.sso.rolemap import RoleMapping, claim_groups, parse_role_map
from audit.models import AuditEvent


def test_it_parses_global_and_project_items():
    assert parse_role_map(" platform-admins=admin, ml-team=developer@alpha ,ml-team=viewer,,") == (
        RoleMapping("ml-team", "developer", "alpha"),
        RoleMapping("ml-team", "viewer"),
        RoleMapping("platform-admins", "admin"),
    )


def test_it_keeps_group_names_with_spaces_and_slashes():
    assert parse_role_map("/Platform Admins=super_admin") == (RoleMapping("/Platform Admins", "super_admin"),)


def test_it_drops_duplicates_and_reads_an_empty_map():
    assert parse_role_map("a=viewer,a=viewer") == (RoleMapping("a", "viewer"),)
    assert parse_role_map("") == ()


@pytest.mark.parametrize(
    "raw", ["admins", "=admin", "admins=", "admins=not a slug", "admins=admin@", "admins=admin@al pha", "a=b=c"]
)
def test_it_refuses_a_malformed_item_naming_it(raw):
    with pytest.raises(ImproperlyConfigured, match="SYMPHONY_OIDC_ROLE_MAP") as excinfo:
        parse_role_map(f"ok=viewer,{raw}")
    assert repr(raw.strip()) in str(excinfo.value)


@pytest.mark.parametrize(
    ("claims", "claim", "groups"),
    [
        ({"groups": ["a", "b"]}, "groups", {"a", "b"}),
        ({"groups": "a"}, "groups", {"a"}),
        ({"groups": None}, "groups", set()),
        ({}, "groups", set()),
        ({"groups": {"a": 1}}, "groups", set()),
        ({"groups": ["a", {"b": 1}, True, 7]}, "groups", {"a", "7"}),
        ({"realm_access": {"roles": ["ops"]}}, "realm_access.roles", {"ops"}),
        ({"https://example.com/groups": ["x"]}, "https://example.com/groups", {"x"}),
    ],
)
def test_it_reads_the_groups_claim(claims, claim, groups):
    assert claim_groups(claims, claim) == groups


@pytest.fixture
def role_map(settings):
    settings.SYMPHONY_OIDC_ROLE_MAP = (
        "admins=admin,devs=developer,devs=viewer@alpha,ghosts=no-such-role,roots=super_admin"
    )


def sso_roles(user):
    return sorted(user.role_bindings.filter(source="sso").values_list("role__name", flat=True))


@pytest.mark.django_db
def test_the_sync_grants_only_what_the_map_gives(role_map, user_factory):
    user = user_factory(username="u")
    sync = sso_role_bindings_sync(user=user, groups={"devs", "ghosts", "unmapped"})
    assert sync.granted == ["developer"]
    assert sorted(sync.skipped) == ["devs=viewer@alpha", "no-such-role"]
    assert sso_roles(user) == ["developer"]


@pytest.mark.django_db
def test_the_sync_never_touches_manual_bindings(role_map, user_factory):
    user = user_factory(username="u", roles=["admin", "analyst"])
    sso_role_bindings_sync(user=user, groups={"admins"})
    assert sso_roles(user) == ["admin"]
    sync = sso_role_bindings_sync(user=user, groups=set())
    assert sync.revoked == ["admin"]
    manual = user.role_bindings.filter(source=RoleBinding.Source.MANUAL).values_list("role__name", flat=True)
    assert sorted(manual) == ["admin", "analyst"]


@pytest.mark.django_db
def test_the_sync_keeps_the_last_super_admin(role_map, user_factory):
    user = user_factory(username="only-root")
    sso_role_bindings_sync(user=user, groups={"roots"})
    sync = sso_role_bindings_sync(user=User.objects.get(pk=user.pk), groups=set())
    assert sync.kept == ["super_admin"] and sync.revoked == []
    assert sso_roles(user) == ["super_admin"]


@pytest.mark.django_db
def test_the_sync_records_each_change_and_no_change_is_silent(role_map, user_factory):
    user = user_factory(username="u")
    sso_role_bindings_sync(user=user, groups={"admins"})
    sso_role_bindings_sync(user=user, groups={"admins"})
    events = AuditEvent.objects.filter(event_type__startswith="authz.role")
    assert [(e.event_type, e.details) for e in events] == [
        ("authz.role.assigned", {"user": "u", "role": "admin", "source": "sso"})
    ]


@pytest.mark.django_db
def test_manual_grants_and_sso_bindings_of_one_role_live_side_by_side(role_map, user_factory):
    from accounts import services

    user = user_factory(username="u")
    sso_role_bindings_sync(user=user, groups={"admins"})
    services.role_grant(actor=None, user=user, role="admin")
    assert user.role_bindings.filter(role__name="admin").count() == 2
    services.role_revoke(actor=None, user=user, role="admin")
    assert sso_roles(user) == ["admin"]  # revoking by hand removes the manual grant only
    assert User.objects.get(pk=user.pk).has_perm("agent:delete")
