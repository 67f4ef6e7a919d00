"""The identity API under /api/v1/: me, permissions, roles, users (api-keys: test_api_keys_api.py)."""

import json

import pytest

from accounts.models import Role, User
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def post(client, url, data, headers, method="post"):
    return getattr(client, method)(url, data=json.dumps(data), content_type="application/json", headers=headers)


# --- me ---


def test_it_describes_me_through_a_session_with_no_key(client, user_factory):
    user = user_factory(roles=["guest", "viewer"])
    client.force_login(user)
    body = client.get("/api/v1/me/").json()
    assert body["username"] == user.username
    assert body["roles"] == ["guest", "viewer"]
    assert body["permissions"] == ["agent:read", "orchestra:read", "system:monitor", "trust:read"]
    assert body["api_key"] is None


def test_it_refuses_me_to_anonymous_callers_with_401(client):
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# --- permissions ---


def test_it_lists_the_catalog_by_code(client, user_factory, key_for):
    headers = key_for(user_factory(roles=["guest"]))
    body = client.get("/api/v1/permissions/?page_size=100", headers=headers).json()
    assert body["count"] == 22
    assert body["results"][0] == {
        "code": "agent:create",
        "description": "Register new agents.",
        "resource": "agent",
        "action": "create",
    }
    assert client.get("/api/v1/permissions/audit:export/", headers=headers).json()["code"] == "audit:export"
    assert client.get("/api/v1/permissions/?resource=audit", headers=headers).json()["count"] == 2


# --- roles ---


def test_it_shows_a_role_with_the_issue_shape(client, admin_user, key_for):
    body = client.get("/api/v1/roles/guest/", headers=key_for(admin_user)).json()
    assert body["name"] == "guest"
    assert body["permissions"] == ["agent:read", "system:monitor"]
    assert body["parents"] == []
    assert body["effective_permissions"] == ["agent:read", "system:monitor"]
    assert body["is_system"] is True
    assert {"description", "created_at", "updated_at"} <= body.keys()


def test_it_creates_updates_and_deletes_a_role_by_name(client, super_admin, key_for):
    headers = key_for(super_admin)
    data = {"name": "ops-lead", "description": "Leads", "permissions": ["audit:read"], "parents": ["operator"]}
    response = post(client, "/api/v1/roles/", data, headers)
    assert response.status_code == 201, response.json()
    assert "audit:read" in response.json()["effective_permissions"]
    assert "agent:execute" in response.json()["effective_permissions"]
    response = post(client, "/api/v1/roles/ops-lead/", {"parents": []}, headers, method="patch")
    assert response.json()["effective_permissions"] == ["audit:read"]
    assert client.delete("/api/v1/roles/ops-lead/", headers=headers).status_code == 204
    assert [e.event_type for e in AuditEvent.objects.order_by("id")] == ["role.created", "role.updated", "role.deleted"]


@pytest.mark.parametrize(
    ("data", "field", "status"),
    [
        ({"name": "x", "permissions": ["agent:fly"]}, "permissions", 400),
        ({"name": "x", "parents": ["ghost"]}, "parents", 400),
        ({"name": "viewer"}, "name", 400),
        ({"name": "not a slug"}, "name", 400),
        ({"permissions": ["agent:read"]}, "name", 400),
    ],
)
def test_it_rejects_bad_role_input_naming_the_field(client, super_admin, key_for, data, field, status):
    before = Role.objects.count()
    response = post(client, "/api/v1/roles/", data, key_for(super_admin))
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert error["message"].startswith(field)
    assert Role.objects.count() == before
    assert not AuditEvent.objects.exists()


def test_it_rejects_a_cycle_with_400_on_parents(client, super_admin, key_for, role_factory):
    parent = role_factory()
    child = role_factory(parents=[parent.name])
    response = post(client, f"/api/v1/roles/{parent.name}/", {"parents": [child.name]}, key_for(super_admin), "patch")
    assert response.status_code == 400
    assert "parents" in response.json()["error"]["details"]
    assert not parent.parents.exists()


def test_it_protects_system_roles(client, super_admin, key_for):
    headers = key_for(super_admin)
    response = client.delete("/api/v1/roles/viewer/", headers=headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "system_role_protected"
    response = post(client, "/api/v1/roles/viewer/", {"name": "reader"}, headers, "patch")
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"name": ["System role 'viewer' cannot be renamed."]}


def test_it_refuses_role_escalation_with_403(client, user_factory, key_for):
    actor = user_factory(roles=["viewer"], extra_permissions=["system:admin"])
    response = post(client, "/api/v1/roles/", {"name": "x", "permissions": ["user:delete"]}, key_for(actor))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "escalation_refused"
    assert "permissions" in response.json()["error"]["details"]
    assert not Role.objects.filter(name="x").exists()
    event = AuditEvent.objects.get(event_type="authz.permission.denied")
    assert event.details["reason"] == "escalation_refused"
    assert event.actor == actor
    assert not AuditEvent.objects.filter(event_type="role.created").exists()


def test_it_requires_system_admin_to_change_roles(client, admin_user, key_for):
    response = post(client, "/api/v1/roles/", {"name": "x"}, key_for(admin_user))
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Permission 'system:admin' is required."
    assert AuditEvent.objects.get().event_type == "authz.permission.denied"


def test_it_answers_malformed_json_with_400(client, super_admin, key_for):
    response = client.post(
        "/api/v1/roles/", data="{nope", content_type="application/json", headers=key_for(super_admin)
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


# --- users ---


def test_it_creates_a_user_with_roles_and_extra_permissions(client, admin_user, key_for):
    data = {
        "username": "bob",
        "email": "bob@example.com",
        "password": "a-long-enough-passphrase-1",
        "roles": ["viewer"],
        "extra_permissions": ["audit:read"],
    }
    response = post(client, "/api/v1/users/", data, key_for(admin_user))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "password" not in body
    assert body["roles"] == ["viewer"]
    assert body["extra_permissions"] == ["audit:read"]
    assert User.objects.get(username="bob").check_password("a-long-enough-passphrase-1")


@pytest.mark.parametrize(
    ("data", "field", "status"),
    [
        ({"username": "bob", "roles": ["nobody"]}, "roles", 400),
        ({"username": "bob", "extra_permissions": ["agent:fly"]}, "extra_permissions", 400),
        ({"username": "bob", "password": "123"}, "password", 400),
        ({"username": "alice"}, "username", 400),
        ({"username": "bob", "email": "not-an-email"}, "email", 400),
        ({"username": "bob", "roles": ["super_admin"]}, "roles", 403),
        ({"username": "bob", "extra_permissions": ["user:delete"]}, "extra_permissions", 403),
        ({"username": "bob", "is_superuser": True}, "is_superuser", 403),
    ],
)
def test_it_rejects_bad_user_input_naming_the_field(client, admin_user, key_for, data, field, status):
    response = post(client, "/api/v1/users/", data, key_for(admin_user))
    assert response.status_code == status, response.json()
    assert field in response.json()["error"]["details"]
    assert not User.objects.filter(username="bob").exists()
    assert not AuditEvent.objects.exclude(event_type="authz.permission.denied").exists()


def test_it_updates_roles_by_name(client, admin_user, user_factory, key_for):
    bob = user_factory(username="bob", roles=["guest"])
    response = post(client, "/api/v1/users/bob/", {"roles": ["viewer"]}, key_for(admin_user), "patch")
    assert response.status_code == 200
    assert response.json()["roles"] == ["viewer"]
    assert AuditEvent.objects.get(event_type="authz.role.assigned").details == {"user": "bob", "role": "viewer"}
    assert AuditEvent.objects.get(event_type="authz.role.revoked").details == {"user": bob.username, "role": "guest"}


def test_it_refuses_a_role_beyond_the_actor_on_update(client, admin_user, user_factory, key_for):
    bob = user_factory(username="bob", roles=["guest"])
    response = post(client, "/api/v1/users/bob/", {"roles": ["analyst"]}, key_for(admin_user), "patch")
    assert response.status_code == 403
    assert "audit:export" in response.json()["error"]["details"]["roles"][0]
    assert list(bob.roles.values_list("name", flat=True)) == ["guest"]


def test_it_refuses_to_demote_the_last_super_admin_over_the_api(client, super_admin, key_for):
    response = post(client, f"/api/v1/users/{super_admin.username}/", {"roles": []}, key_for(super_admin), "patch")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_super_admin"
    assert super_admin.roles.filter(name="super_admin").exists()


def test_it_deletes_a_user(client, super_admin, user_factory, key_for):
    user_factory(username="bob")
    assert client.delete("/api/v1/users/bob/", headers=key_for(super_admin)).status_code == 204
    assert not User.objects.filter(username="bob").exists()
    assert AuditEvent.objects.filter(event_type="user.deleted").count() == 1


def test_it_filters_and_searches_users(client, admin_user, user_factory, key_for):
    user_factory(username="carol", roles=["analyst"])
    user_factory(username="dave", roles=["guest"])
    headers = key_for(admin_user)
    assert [u["username"] for u in client.get("/api/v1/users/?role=analyst", headers=headers).json()["results"]] == [
        "carol"
    ]
    assert [u["username"] for u in client.get("/api/v1/users/?search=dav", headers=headers).json()["results"]] == [
        "dave"
    ]


def test_it_needs_user_read_to_list_users(client, user_factory, key_for):
    response = client.get("/api/v1/users/", headers=key_for(user_factory(roles=["viewer"])))
    assert response.status_code == 403
