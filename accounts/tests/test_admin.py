"""The identity admin through the test client: services behind every save, secrets shown once."""

import re

import pytest

from accounts.backends import user_codes
from accounts.models import ApiKey, Permission, Role, User
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def user_form(user: User, **overrides):
    data = {
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "manual_roles": [str(r.pk) for r in user.roles.all()],
        "extra_permissions": [str(p.pk) for p in user.extra_permissions.all()],
        "_save": "Save",
    }
    if user.is_superuser:
        data["is_superuser"] = "on"
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def role_ids(*names):
    return [str(pk) for pk in Role.objects.filter(name__in=names).values_list("pk", flat=True)]


def test_it_saves_a_role_grant_through_the_service(
    client, admin_user, user_factory, django_capture_on_commit_callbacks
):
    bob = user_factory(username="bob", roles=["guest"])
    assert not User.objects.get(pk=bob.pk).has_perm("orchestra:read")  # cached "no"
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/admin/accounts/user/{bob.pk}/change/", user_form(bob, manual_roles=role_ids("viewer"))
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(pk=bob.pk).has_perm("orchestra:read")
    assert AuditEvent.objects.get(event_type="authz.role.assigned").details == {"user": "bob", "role": "viewer"}
    assert AuditEvent.objects.get(event_type="authz.role.revoked").details == {"user": "bob", "role": "guest"}


def test_it_puts_an_escalation_error_on_the_roles_field(client, admin_user, user_factory):
    bob = user_factory(username="bob")
    client.force_login(admin_user)
    response = client.post(
        f"/admin/accounts/user/{bob.pk}/change/", user_form(bob, manual_roles=role_ids("super_admin"))
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "You cannot grant roles with permissions you do not hold" in errors["manual_roles"][0]
    assert not bob.roles.exists()
    assert not AuditEvent.objects.filter(event_type__startswith="authz.role").exists()


def test_it_validates_without_side_effects_when_the_form_is_refused(
    client, admin_user, user_factory, django_capture_on_commit_callbacks
):
    """Issue 10: the form's dry run of the service was rolled back, but its cache invalidation (every
    process's permissions dropped) and its audit events' count were not."""
    from prometheus_client import REGISTRY

    from accounts.backends import permissions_generation

    bob = user_factory(username="bob", roles=["guest"])
    client.force_login(admin_user)
    client.get("/admin/")
    assert "orchestra:read" not in user_codes(User.objects.get(pk=bob.pk))  # cached
    generation = permissions_generation()
    labels = {"event_type": "authz.role.assigned", "severity": "info"}
    count = REGISTRY.get_sample_value("symphony_audit_events_total", labels) or 0
    form = user_form(bob, roles=role_ids("viewer"), email="not an address")  # the dry run passes, the form not
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/accounts/user/{bob.pk}/change/", form)

    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    assert list(bob.roles.values_list("name", flat=True)) == ["guest"]
    assert permissions_generation() == generation
    assert (REGISTRY.get_sample_value("symphony_audit_events_total", labels) or 0) == count
    assert not AuditEvent.objects.filter(event_type__startswith="authz.role").exists()


def test_it_refuses_to_deactivate_the_last_super_admin_in_the_form(client, super_admin):
    client.force_login(super_admin)
    response = client.post(f"/admin/accounts/user/{super_admin.pk}/change/", user_form(super_admin, is_active=""))
    assert response.status_code == 200
    assert "no active super admin" in response.context["adminform"].form.errors["is_active"][0]
    assert User.objects.get(pk=super_admin.pk).is_active


def test_it_adds_a_user_through_the_service(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/accounts/user/add/",
        {"username": "newbie", "usable_password": "true", "password1": "a-long-enough-passphrase-1",
         "password2": "a-long-enough-passphrase-1", "_save": "Save"},
    )  # fmt: skip
    assert response.status_code == 302
    user = User.objects.get(username="newbie")
    assert user.check_password("a-long-enough-passphrase-1")
    assert AuditEvent.objects.get(event_type="user.created").actor == admin_user


def test_it_forbids_an_admin_to_reset_a_super_admins_password(client, admin_user, super_admin):
    client.force_login(admin_user)
    assert client.get(f"/admin/accounts/user/{super_admin.pk}/password/").status_code == 403


def test_it_shows_effective_permissions_read_only(client, super_admin, user_factory):
    bob = user_factory(roles=["guest"], extra_permissions=["audit:read"])
    client.force_login(super_admin)
    html = client.get(f"/admin/accounts/user/{bob.pk}/change/").content.decode()
    assert "<code>agent:read</code>, <code>audit:read</code>, <code>system:monitor</code>" in html


def test_it_puts_a_cycle_error_on_parents(client, super_admin, role_factory):
    parent = role_factory()
    child = role_factory(parents=[parent.name])
    client.force_login(super_admin)
    response = client.post(
        f"/admin/accounts/role/{parent.pk}/change/",
        {"name": parent.name, "description": "", "parents": [str(child.pk)], "_save": "Save"},
    )
    assert response.status_code == 200
    assert "cycle" in response.context["adminform"].form.errors["parents"][0]
    assert not parent.parents.exists()


def test_it_creates_a_role_through_the_service(client, super_admin):
    client.force_login(super_admin)
    perm = Permission.objects.get(code="audit:read")
    response = client.post(
        "/admin/accounts/role/add/",
        {"name": "auditor", "description": "Reads", "permissions": [str(perm.pk)], "_save": "Save"},
    )
    assert response.status_code == 302
    assert list(Role.objects.get(name="auditor").permissions.all()) == [perm]
    assert AuditEvent.objects.get(event_type="role.created").details["permissions"] == ["audit:read"]


def test_it_protects_system_roles_in_the_admin(client, super_admin):
    client.force_login(super_admin)
    viewer = Role.objects.get(name="viewer")
    assert client.get(f"/admin/accounts/role/{viewer.pk}/delete/").status_code == 403
    html = client.get(f"/admin/accounts/role/{viewer.pk}/change/").content.decode()
    assert 'name="name"' not in html  # read-only: cannot be renamed


def test_it_shows_a_new_key_once_and_never_its_hash(client, super_admin):
    client.force_login(super_admin)
    scope = Permission.objects.get(code="agent:read")
    response = client.post(
        "/admin/accounts/apikey/add/",
        {"name": "deploy", "owner": str(super_admin.pk), "scopes": [str(scope.pk)], "rate_limit": "100/m",
         "_save": "Save"},
        follow=True,
    )  # fmt: skip
    html = response.content.decode()
    (raw,) = re.findall(r"sym_[a-z0-9]{12}_[A-Za-z0-9_\-]{43,}", html)
    key = ApiKey.objects.get(name="deploy")
    assert raw.startswith(f"sym_{key.prefix}_")
    assert f"deploy ({key.prefix})" in html  # the admin's own "added" message names the saved key
    again = (
        client.get("/admin/accounts/apikey/").content.decode()
        + client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    )
    assert raw not in again
    assert key.key_hash not in html + again
    assert AuditEvent.objects.get(event_type="apikey.created").actor == super_admin


def test_it_shows_an_existing_key_read_only_and_claims_no_change(client, super_admin, api_key_factory):
    """Issue 10: read-only pages must not offer Save, nor answer a POST with "changed successfully"."""
    key = api_key_factory(owner=super_admin, name="frozen")
    client.force_login(super_admin)
    html = client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert 'name="_save"' not in html
    response = client.post(f"/admin/accounts/apikey/{key.pk}/change/", {"name": "thawed"}, follow=True)
    assert response.status_code == 403
    assert "changed successfully" not in response.content.decode()
    assert ApiKey.objects.get(pk=key.pk).name == "frozen"


def test_it_rejects_a_bad_rate_limit_on_the_field(client, super_admin):
    client.force_login(super_admin)
    response = client.post(
        "/admin/accounts/apikey/add/", {"name": "k", "owner": str(super_admin.pk), "rate_limit": "9/week"}
    )
    assert response.status_code == 200
    assert "rate_limit" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()


def test_it_refuses_lookups_on_the_key_hash(client, super_admin, api_key_factory):
    key = api_key_factory()
    client.force_login(super_admin)
    response = client.get(f"/admin/accounts/apikey/?key_hash={key.key_hash}")
    assert response.status_code == 400


def test_it_revokes_and_rotates_with_admin_actions(client, super_admin, api_key_factory):
    keys = [api_key_factory(owner=super_admin) for _ in range(2)]
    client.force_login(super_admin)
    ids = [str(k.pk) for k in keys]
    response = client.post(
        "/admin/accounts/apikey/", {"action": "rotate_keys", "_selected_action": ids[:1]}, follow=True
    )
    html = response.content.decode()
    assert "Rotated 1 API key(s)." in html
    assert len(re.findall(r"sym_[a-z0-9]{12}_[A-Za-z0-9_\-]{43,}", html)) == 1
    response = client.post("/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": ids}, follow=True)
    assert "Revoked 2 API key(s)." in response.content.decode()
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    assert AuditEvent.objects.filter(event_type="apikey.revoked").count() == 2


def test_it_lets_a_read_only_staff_user_view_but_not_change_users(client, user_factory):
    viewer = user_factory(roles=["viewer"], extra_permissions=["user:read"], is_staff=True)
    bob = user_factory(username="bob")
    client.force_login(viewer)
    page = client.get(f"/admin/accounts/user/{bob.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    response = client.post(f"/admin/accounts/user/{bob.pk}/change/", user_form(bob, manual_roles=role_ids("viewer")))
    assert response.status_code == 403
    assert not bob.roles.exists()
    assert user_codes(viewer) == {"agent:read", "orchestra:read", "trust:read", "system:monitor", "user:read"}


def test_it_hides_groups_and_keeps_the_catalog_read_only(client, super_admin):
    client.force_login(super_admin)
    assert client.get("/admin/auth/group/").status_code == 404
    assert client.get("/admin/accounts/permission/add/").status_code == 403


def test_it_refuses_to_delete_the_last_super_admin_with_a_message(client, super_admin):
    client.force_login(super_admin)
    response = client.post(f"/admin/accounts/user/{super_admin.pk}/delete/", {"post": "yes"}, follow=True)
    assert "no active super admin" in response.content.decode() or "last active super admin" in (
        response.content.decode()
    )
    assert User.objects.filter(pk=super_admin.pk).exists()
    assert not AuditEvent.objects.filter(event_type="user.deleted").exists()


def test_it_deletes_a_user_through_the_service(client, super_admin, user_factory):
    bob = user_factory(username="bob")
    client.force_login(super_admin)
    response = client.post(f"/admin/accounts/user/{bob.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=bob.pk).exists()
    assert AuditEvent.objects.get(event_type="user.deleted").details == {"username": "bob"}


def test_it_changes_my_own_password_audited_and_keeps_me_signed_in(client, super_admin):
    client.force_login(super_admin)
    response = client.post(
        f"/admin/accounts/user/{super_admin.pk}/password/",
        {"usable_password": "true", "password1": "another-long-passphrase-2", "password2": "another-long-passphrase-2"},
    )
    assert response.status_code == 302
    assert User.objects.get(pk=super_admin.pk).check_password("another-long-passphrase-2")
    assert AuditEvent.objects.get(event_type="user.updated").details["changes"] == {"password": "changed"}
    assert client.get("/admin/").status_code == 200  # still signed in


def test_it_ignores_api_keys_in_the_admin_which_is_session_only(client, super_admin, api_key_factory):
    # The key rules (a key never manages a broader key) need no admin twin: no key ever acts there.
    key = api_key_factory(owner=super_admin, scopes=["user:update", "user:read"])
    victim = api_key_factory(owner=super_admin)
    headers = {"Authorization": f"Bearer {key.raw}", "X-API-Key": key.raw}
    add = client.post("/admin/accounts/apikey/add/", {"name": "via-key", "owner": str(super_admin.pk)}, headers=headers)
    revoke = client.post(
        "/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": [str(victim.pk)]}, headers=headers
    )
    for response in (add, revoke):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert not ApiKey.objects.filter(name="via-key").exists()
    assert ApiKey.objects.get(pk=victim.pk).revoked_at is None
