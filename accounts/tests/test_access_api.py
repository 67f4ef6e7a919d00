"""Denials explain themselves, and the access check says through which binding a user holds a code."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Permission, Project, Role, RoleBinding
from agents.tests.factories import OrchestraFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(project_factory: Any) -> Project:
    return project_factory(slug="alpha")


def bind(user: Any, role: str, project: Project | None = None) -> None:
    RoleBinding.objects.create(user=user, role=Role.objects.get(name=role), project=project)


def denial(response: Any) -> dict[str, Any]:
    assert response.status_code == 403, response.content
    body = response.json()["error"]
    assert body["code"] == "permission_denied"
    return body["details"]


def test_a_denial_by_roles_names_the_permission(make_api: Any) -> None:
    r = make_api("viewer").post("/api/v1/roles/", {"name": "x"})
    assert denial(r) == {"required": ["system:admin"], "project": None, "limited_by": "roles"}
    event = AuditEvent.objects.filter(event_type="authz.permission.denied").latest("id")
    assert event.details["limited_by"] == "roles"


def test_a_denial_by_the_keys_scopes_says_so(make_api: Any) -> None:
    r = make_api("admin", scopes=["agent:read"]).get("/api/v1/users/")
    assert denial(r) == {"required": ["user:read"], "project": None, "limited_by": "api_key_scopes"}


def test_a_denial_in_a_project_names_the_visible_project(
    make_api: Any, make_user: Any, alpha: Project, project_factory: Any
) -> None:
    user = make_user()
    bind(user, "viewer", alpha)
    bind(user, "operator", project_factory(slug="beta"))  # orchestra:control, but in beta only
    orchestra = OrchestraFactory(project=alpha)
    r = make_api(user=user).post(f"/api/v1/orchestras/{orchestra.pk}/start/")
    assert denial(r) == {"required": ["orchestra:control"], "project": "alpha", "limited_by": "roles"}


def test_a_denial_by_the_keys_project_says_so(
    make_api: Any, make_user: Any, alpha: Project, project_factory: Any
) -> None:
    user = make_user()
    bind(user, "viewer", alpha)
    bind(user, "operator", project_factory(slug="beta"))  # agent:execute in beta; the key is alpha's
    r = make_api(user=user, project=alpha).post("/api/v1/tasks/", {"kind": "echo", "orchestra": 1})
    assert denial(r) == {"required": ["agent:execute"], "project": "alpha", "limited_by": "api_key_project"}


def test_a_denial_says_nothing_of_objects_the_caller_cannot_see(
    make_api: Any, make_user: Any, alpha: Project, project_factory: Any
) -> None:
    user = make_user()
    bind(user, "viewer", alpha)
    api = make_api(user=user)
    hidden = OrchestraFactory(project=project_factory(slug="secret-beta"))
    # The object is looked up before the permission is named: beta's orchestra is a 404 either way.
    r = api.post(f"/api/v1/orchestras/{hidden.pk}/start/")
    assert r.status_code == 404 and "secret-beta" not in r.content.decode()
    bind(user, "operator", alpha)
    from accounts.backends import invalidate_permissions

    invalidate_permissions()
    # A new key (the first one's scopes were fixed at creation), of a fresh copy of the user (the
    # old one memoised its permissions).
    api = make_api(user=type(user).objects.get(pk=user.pk))
    r = api.post(f"/api/v1/orchestras/{hidden.pk}/start/")
    assert r.status_code == 404, r.content
    assert "secret-beta" not in r.content.decode()


def test_the_access_check_names_the_binding(make_api: Any, make_user: Any, alpha: Project) -> None:
    bob = make_user(username="bob")
    bind(bob, "operator", alpha)
    bob.extra_permissions.add(Permission.objects.get(code="audit:read"))
    api = make_api("admin")  # user:read

    r = api.get("/api/v1/access/check/", {"user": "bob", "permission": "agent:execute", "project": "alpha"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["allowed"] is True
    assert body["through"] == [
        {"kind": "role", "role": "operator", "project": "alpha", "source": "manual", "inherited_from": None}
    ]
    r = api.get("/api/v1/access/check/", {"user": "bob", "permission": "agent:execute"})
    assert r.json()["allowed"] is False and r.json()["through"] == []
    r = api.get("/api/v1/access/check/", {"user": "bob", "permission": "audit:read"})
    assert r.json()["through"] == [
        {"kind": "extra_permission", "role": None, "project": None, "source": None, "inherited_from": None}
    ]


def test_the_access_check_names_the_inherited_parent(make_api: Any, make_user: Any) -> None:
    parent = Role.objects.create(name="reader")
    parent.permissions.add(Permission.objects.get(code="trust:manage"))
    child = Role.objects.create(name="team-lead")
    child.parents.add(parent)
    bind(make_user(username="dora"), "team-lead")
    r = make_api("admin").get("/api/v1/access/check/", {"user": "dora", "permission": "trust:manage"})
    assert r.json()["through"] == [
        {"kind": "role", "role": "team-lead", "project": None, "source": "manual", "inherited_from": "reader"}
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"user": "nobody", "permission": "agent:read"}, "user"),
        ({"user": "bob", "permission": "agent:fly"}, "permission"),
        ({"user": "bob", "permission": "agent:read", "project": "nowhere"}, "project"),
    ],
)
def test_the_access_check_names_a_bad_parameter(make_api: Any, make_user: Any, params: dict, field: str) -> None:
    make_user(username="bob")
    r = make_api("admin").get("/api/v1/access/check/", params)
    assert r.status_code == 400
    assert field in r.json()["error"]["details"]


def test_the_access_check_needs_user_read(make_api: Any) -> None:
    r = make_api("guest").get("/api/v1/access/check/", {"user": "x", "permission": "agent:read"})
    assert denial(r)["required"] == ["user:read"]


def test_the_admin_check_access_page_answers(client: Any, make_user: Any, alpha: Project) -> None:
    bob = make_user(username="bob")
    bind(bob, "operator", alpha)
    client.force_login(make_user("admin", username="alice", is_staff=True))
    change = client.get(f"/admin/accounts/user/{bob.pk}/change/")
    assert f"/admin/accounts/user/{bob.pk}/check-access/" in change.content.decode()
    page = client.get(
        f"/admin/accounts/user/{bob.pk}/check-access/", {"permission": "agent:execute", "project": "alpha"}
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "Allowed" in html and "operator" in html
    page = client.get(f"/admin/accounts/user/{bob.pk}/check-access/", {"permission": "agent:execute"})
    assert "Not allowed" in page.content.decode()


def test_the_admin_check_access_page_needs_user_read(client: Any, make_user: Any) -> None:
    bob = make_user(username="bob")
    client.force_login(make_user("operator", username="olga", is_staff=True))
    assert client.get(f"/admin/accounts/user/{bob.pk}/check-access/").status_code == 403
