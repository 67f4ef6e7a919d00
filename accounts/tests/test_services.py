"""Services: rules, audit events and cache invalidation, called directly."""

import itertools
from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts import services
from accounts.backends import invalidate_permissions, permissions_generation, user_codes
from accounts.exceptions import ApiKeyStateConflict, EscalationRefused, LastSuperAdmin, SystemRoleProtected
from accounts.models import ApiKey, Role, User

pytestmark = pytest.mark.django_db


# --- roles ---


def test_it_creates_a_role_with_permissions_and_parents_and_audits_it(super_admin, events):
    role = services.role_create(
        actor=super_admin, name="auditor", description="Reads", permissions=["audit:read"], parents=["guest"]
    )
    assert sorted(role.permissions.values_list("code", flat=True)) == ["audit:read"]
    assert list(role.parents.values_list("name", flat=True)) == ["guest"]
    (event,) = events("role.created")
    assert event.actor == super_admin
    assert event.details == {"name": "auditor", "permissions": ["audit:read"], "parents": ["guest"]}


def test_it_rejects_unknown_codes_and_role_names_naming_the_field(super_admin):
    with pytest.raises(ValidationError) as exc:
        services.role_create(actor=super_admin, name="x", permissions=["agent:fly"])
    assert "permissions" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        services.role_create(actor=super_admin, name="x", parents=["nobody"])
    assert "parents" in exc.value.message_dict
    assert not Role.objects.filter(name="x").exists()


def test_it_rejects_a_duplicate_role_name(super_admin):
    with pytest.raises(ValidationError) as exc:
        services.role_create(actor=super_admin, name="viewer")
    assert "name" in exc.value.message_dict


@pytest.mark.parametrize("length", [1, 2, 3])
def test_it_rejects_a_cycle_in_parents(super_admin, role_factory, length):
    chain = [role_factory() for _ in range(length)]
    for child, parent in itertools.pairwise(chain):
        child.parents.add(parent)
    with pytest.raises(ValidationError) as exc:
        services.role_update(actor=super_admin, role=chain[-1], parents=[chain[0]])
    assert "parents" in exc.value.message_dict
    assert not chain[-1].parents.exists()


def test_it_refuses_to_rename_or_delete_a_system_role(super_admin):
    viewer = Role.objects.get(name="viewer")
    with pytest.raises(SystemRoleProtected):
        services.role_update(actor=super_admin, role=viewer, name="reader")
    with pytest.raises(SystemRoleProtected):
        services.role_delete(actor=super_admin, role=viewer)
    assert Role.objects.filter(name="viewer").exists()


def test_it_keeps_every_permission_on_super_admin(super_admin):
    with pytest.raises(SystemRoleProtected):
        services.role_update(actor=super_admin, role=Role.objects.get(name="super_admin"), permissions=["agent:read"])


def test_it_refuses_a_role_granting_what_the_actor_lacks(user_factory, events):
    actor = user_factory(roles=["viewer"], extra_permissions=["system:admin"])
    with pytest.raises(EscalationRefused) as exc:
        services.role_create(actor=actor, name="sneaky", permissions=["user:delete"])
    assert exc.value.field == "permissions"
    with pytest.raises(EscalationRefused) as exc:
        services.role_create(actor=actor, name="sneaky", parents=["admin"])
    assert exc.value.field == "parents"
    assert not Role.objects.filter(name="sneaky").exists()
    assert events("role.created") == []


def test_it_deletes_a_custom_role_and_audits_it(super_admin, role_factory, events):
    role = role_factory()
    services.role_delete(actor=super_admin, role=role)
    assert not Role.objects.filter(pk=role.pk).exists()
    assert events("role.deleted")[0].details["name"] == role.name


def test_it_records_role_permission_changes(super_admin, role_factory, events):
    role = role_factory(permissions=["agent:read"])
    services.role_update(actor=super_admin, role=role, permissions=["agent:read", "audit:read"])
    (event,) = events("role.updated")
    assert event.details["changes"]["permissions"] == {"added": ["audit:read"], "removed": []}


# --- users and grants ---


def test_it_creates_a_user_with_roles_and_extra_permissions(admin_user, events):
    user = services.user_create(
        actor=admin_user,
        username="bob",
        email="bob@example.com",
        password="a-long-enough-passphrase-1",
        roles=["viewer"],
        extra_permissions=["audit:read"],
    )
    assert user.check_password("a-long-enough-passphrase-1")
    assert set(user_codes(user)) == {"agent:read", "orchestra:read", "trust:read", "system:monitor", "audit:read"}
    assert [e.event_type for e in events()] == ["user.created", "authz.role.assigned", "authz.permission.granted"]


def test_it_rejects_a_weak_password_on_the_password_field(admin_user):
    with pytest.raises(ValidationError) as exc:
        services.user_create(actor=admin_user, username="bob", password="123")
    assert "password" in exc.value.message_dict
    assert not User.objects.filter(username="bob").exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"roles": ["super_admin"]}, "roles"),
        ({"extra_permissions": ["user:delete"]}, "extra_permissions"),
        ({"is_superuser": True}, "is_superuser"),
    ],
)
def test_it_refuses_escalation_when_creating_a_user(admin_user, kwargs, field, events):
    with pytest.raises(EscalationRefused) as exc:
        services.user_create(actor=admin_user, username="bob", **kwargs)
    assert exc.value.field == field
    assert exc.value.get_codes() == "escalation_refused"
    assert not User.objects.filter(username="bob").exists()
    assert events() == []


def test_it_grants_and_revokes_roles_and_permissions_with_audit(admin_user, user_factory, events):
    bob = user_factory()
    services.role_grant(actor=admin_user, user=bob, role="viewer")
    services.permission_grant(actor=admin_user, user=bob, permission="audit:read")
    assert bob.has_perm("audit:read")
    services.role_revoke(actor=admin_user, user=bob, role="viewer")
    services.permission_revoke(actor=admin_user, user=bob, permission="audit:read")
    assert list(bob.roles.all()) == []
    assert [e.event_type for e in events()] == [
        "authz.role.assigned",
        "authz.permission.granted",
        "authz.role.revoked",
        "authz.permission.revoked",
    ]
    assert events("authz.role.assigned")[0].details == {"user": bob.username, "role": "viewer"}


def test_it_refuses_to_change_a_user_who_outranks_the_actor(admin_user, super_admin):
    with pytest.raises(EscalationRefused):
        services.user_update(actor=admin_user, user=super_admin, password="a-long-enough-passphrase-1")
    with pytest.raises(EscalationRefused):
        services.role_revoke(actor=admin_user, user=super_admin, role="super_admin")
    with pytest.raises(EscalationRefused):
        services.user_delete(actor=admin_user, user=super_admin)


@pytest.mark.parametrize(
    "change",
    [{"is_active": False}, {"roles": []}, {"is_superuser": False, "roles": ["admin"]}],
)
def test_it_keeps_the_last_super_admin(super_admin, change):
    with pytest.raises(LastSuperAdmin):
        services.user_update(actor=super_admin, user=super_admin, **change)
    super_admin.refresh_from_db()
    assert super_admin.is_active
    assert super_admin.roles.filter(name="super_admin").exists()


def test_it_refuses_to_delete_the_last_super_admin_but_allows_one_of_two(super_admin, user_factory):
    with pytest.raises(LastSuperAdmin):
        services.user_delete(actor=super_admin, user=super_admin)
    other = user_factory(is_superuser=True)
    services.user_delete(actor=super_admin, user=other)
    assert User.objects.filter(pk=super_admin.pk).exists()


def test_it_lets_a_super_admin_step_down_when_another_remains(super_admin, user_factory):
    user_factory(is_superuser=True)
    services.role_revoke(actor=super_admin, user=super_admin, role="super_admin")
    assert not super_admin.roles.exists()


# --- cache invalidation ---


def test_it_invalidates_permissions_when_the_change_commits(
    admin_user, user_factory, django_capture_on_commit_callbacks
):
    bob = user_factory(roles=["guest"])
    assert "audit:read" not in user_codes(bob)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.permission_grant(actor=admin_user, user=bob, permission="audit:read")
    assert invalidate_permissions in callbacks
    before = permissions_generation()
    for callback in callbacks:
        callback()
    assert permissions_generation() > before
    assert "audit:read" in user_codes(User.objects.get(pk=bob.pk))


def test_it_invalidates_when_a_role_gains_a_permission(super_admin, user_factory, role_factory):
    role = role_factory(permissions=["agent:read"])
    bob = user_factory(roles=[role.name])
    assert set(user_codes(bob)) == {"agent:read"}
    services.role_update(actor=super_admin, role=role, permissions=["agent:read", "trust:read"])
    assert set(user_codes(User.objects.get(pk=bob.pk))) == {"agent:read", "trust:read"}


# --- API keys ---


def test_it_rotates_a_key_with_a_grace_period(admin_user, api_key_factory, settings, events):
    settings.SYMPHONY_API_KEY_ROTATION_GRACE_HOURS = 24
    old = api_key_factory(owner=admin_user, scopes=["agent:read"], rate_limit="10/s")
    with time_machine.travel(timezone.now(), tick=False):
        new, raw = services.api_key_rotate(actor=admin_user, key=old)
        old.refresh_from_db()
        assert old.rotated_to == new
        assert old.expires_at == timezone.now() + timedelta(hours=24)
    assert raw.startswith(f"sym_{new.prefix}_")
    assert new.name == old.name
    assert new.rate_limit == "10/s"
    assert list(new.scopes.values_list("code", flat=True)) == ["agent:read"]
    assert events("apikey.rotated")[0].details["new_prefix"] == new.prefix
    with pytest.raises(ApiKeyStateConflict):
        services.api_key_rotate(actor=admin_user, key=old)


def test_it_revokes_a_key_once(admin_user, api_key_factory, events):
    key = api_key_factory(owner=admin_user)
    services.api_key_revoke(actor=admin_user, key=key)
    key.refresh_from_db()
    assert key.revoked_at is not None
    with pytest.raises(ApiKeyStateConflict):
        services.api_key_revoke(actor=admin_user, key=key)
    assert len(events("apikey.revoked")) == 1


def test_it_refuses_managing_someone_elses_key_without_user_update(user_factory, api_key_factory):
    key = api_key_factory(owner=user_factory(roles=["guest"]))
    with pytest.raises(EscalationRefused):
        services.api_key_revoke(actor=user_factory(roles=["viewer"]), key=key)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_it_refuses_key_scopes_beyond_the_actor(user_factory):
    viewer = user_factory(roles=["viewer"])
    with pytest.raises(EscalationRefused) as exc:
        services.api_key_create(owner=viewer, name="k", scopes=["agent:delete"])
    assert exc.value.field == "scopes"
    assert not ApiKey.objects.exists()


def test_it_stores_only_the_hash_of_a_new_key(user_factory):
    key, raw = services.api_key_create(owner=user_factory(roles=["viewer"]), name="k")
    assert raw not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    assert sorted(key.scopes.values_list("code", flat=True)) == [
        "agent:read",
        "orchestra:read",
        "system:monitor",
        "trust:read",
    ]


def test_it_refuses_a_key_for_a_user_who_outranks_the_actor(admin_user, super_admin):
    with pytest.raises(EscalationRefused) as exc:
        services.api_key_create(owner=super_admin, name="k", scopes=["agent:read"], actor=admin_user)
    assert exc.value.field == "owner"
    assert not ApiKey.objects.exists()


def test_it_lets_a_user_manager_create_a_key_for_a_lesser_user(admin_user, user_factory):
    bob = user_factory(roles=["viewer"])
    key, _raw = services.api_key_create(owner=bob, name="k", scopes=["agent:read"], actor=admin_user)
    assert key.owner == bob
