"""Projects through the API: CRUD by system:admin, lists of the caller's projects, ``role@project``
bindings on users (without escalation), project roles on /me/, and the SSO map's ``@project``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from accounts.models import Project, RoleBinding
from accounts.services.sso import sso_role_bindings_sync
from agents.tests.conftest import Api
from agents.tests.factories import OrchestraFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(project_factory: Any) -> Project:
    return project_factory(slug="alpha")


@pytest.fixture
def beta(project_factory: Any) -> Project:
    return project_factory(slug="beta")


def bind(user: Any, role: str, project: Project | None = None) -> None:
    from accounts.models import Role

    RoleBinding.objects.create(user=user, role=Role.objects.get(name=role), project=project)


def test_system_admins_create_change_and_delete_projects(admin_api: Api) -> None:
    r = admin_api.post("/api/v1/projects/", {"slug": "gamma", "name": "Gamma", "description": "team g"})
    assert r.status_code == 201, r.content
    assert r.json()["slug"] == "gamma"
    r = admin_api.patch("/api/v1/projects/gamma/", {"name": "Gamma team"})
    assert r.status_code == 200 and r.json()["name"] == "Gamma team"
    r = admin_api.patch("/api/v1/projects/gamma/", {"slug": "delta"})
    assert r.status_code == 400 and "slug" in r.json()["error"]["details"]
    r = admin_api.post("/api/v1/projects/", {"slug": "gamma", "name": "Other"})
    assert r.status_code == 400 and "slug" in r.json()["error"]["details"]
    assert admin_api.delete("/api/v1/projects/gamma/").status_code == 204
    assert not Project.objects.filter(slug="gamma").exists()
    types = list(
        AuditEvent.objects.filter(event_type__startswith="project.").order_by("id").values_list("event_type", "project")
    )
    assert types == [("project.created", "gamma"), ("project.updated", "gamma"), ("project.deleted", "gamma")]


def test_it_refuses_to_delete_a_project_that_owns_objects(admin_api: Api, alpha: Project) -> None:
    OrchestraFactory(project=alpha)
    r = admin_api.delete("/api/v1/projects/alpha/")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "project_not_empty"
    assert Project.objects.filter(slug="alpha").exists()


def test_only_system_admins_write_projects(make_api: Any, make_user: Any, alpha: Project) -> None:
    user = make_user()
    bind(user, "admin", alpha)  # system:admin in alpha only is not enough
    api = make_api(user=user)
    r = api.post("/api/v1/projects/", {"slug": "gamma", "name": "Gamma"})
    assert r.status_code == 403
    assert not Project.objects.filter(slug="gamma").exists()


def test_the_list_shows_the_callers_projects(make_api: Any, make_user: Any, alpha: Project, beta: Project) -> None:
    user = make_user()
    bind(user, "viewer", alpha)
    r = make_api(user=user).get("/api/v1/projects/")
    assert [p["slug"] for p in r.json()["results"]] == ["alpha"]
    assert make_api(user=user).get("/api/v1/projects/beta/").status_code == 404
    glob = make_api("viewer").get("/api/v1/projects/")
    assert {p["slug"] for p in glob.json()["results"]} >= {"alpha", "beta", "default"}


def test_users_get_roles_in_projects(admin_api: Api, make_user: Any, alpha: Project) -> None:
    make_user(username="bob")
    r = admin_api.patch("/api/v1/users/bob/", {"roles": ["viewer", "operator@alpha"]})
    assert r.status_code == 200, r.content
    assert r.json()["roles"] == ["operator@alpha", "viewer"]
    binding = RoleBinding.objects.get(user__username="bob", role__name="operator")
    assert binding.project == alpha
    event = AuditEvent.objects.get(event_type="authz.role.assigned", details__role="operator")
    assert event.project == "alpha" and event.details["project"] == "alpha"
    r = admin_api.patch("/api/v1/users/bob/", {"roles": ["viewer@nowhere"]})
    assert r.status_code == 400 and "nowhere" in r.json()["error"]["details"]["roles"][0]
    assert RoleBinding.objects.filter(user__username="bob").count() == 2


def test_granting_in_a_project_needs_the_role_there(
    make_api: Any, make_user: Any, alpha: Project, beta: Project
) -> None:
    from accounts.backends import invalidate_permissions
    from accounts.models import Permission

    granter = make_user()
    bind(granter, "operator", alpha)
    # Managing users is global: user:read and user:update globally, but roles only in alpha.
    granter.extra_permissions.add(*Permission.objects.filter(code__in=["user:read", "user:update"]))
    invalidate_permissions()
    target = make_user(username="carol")
    api = make_api(user=granter)
    r = api.patch("/api/v1/users/carol/", {"roles": ["operator@alpha"]})
    assert r.status_code == 200, r.content
    r = api.patch("/api/v1/users/carol/", {"roles": ["operator@alpha", "operator@beta"]})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "escalation_refused"
    assert "beta" in r.json()["error"]["message"]
    r = api.patch("/api/v1/users/carol/", {"roles": ["operator"]})
    assert r.status_code == 403
    assert list(target.role_bindings.values_list("role__name", "project__slug")) == [("operator", "alpha")]


def test_me_shows_project_roles(make_api: Any, make_user: Any, alpha: Project) -> None:
    user = make_user("viewer")
    bind(user, "operator", alpha)
    me = make_api(user=user).get("/api/v1/me/").json()
    assert me["roles"] == ["viewer"]
    (project,) = me["projects"]
    assert project["project"] == "alpha" and project["roles"] == ["operator"]
    assert "agent:execute" in project["permissions"] and "agent:execute" not in me["permissions"]


def test_me_through_a_scoped_key_is_exactly_what_its_schema_serializer_renders(
    make_api: Any, make_user: Any, alpha: Project
) -> None:
    from accounts.serializers import MeSerializer

    user = make_user("viewer", username="vera", email="vera@example.com")
    bind(user, "operator", alpha)
    api = make_api(user=user, scopes=["agent:read", "agent:execute"])
    me = api.get("/api/v1/me/").json()
    assert me == {
        "username": "vera",
        "email": "vera@example.com",
        "is_superuser": False,
        "roles": ["viewer"],
        "projects": [{"project": "alpha", "roles": ["operator"], "permissions": ["agent:execute", "agent:read"]}],
        "permissions": ["agent:read"],
        "api_key": {
            "prefix": me["api_key"]["prefix"],
            "name": f"test-{user.pk}-0",
            "scopes": ["agent:execute", "agent:read"],
        },
    }
    assert api.key.startswith(f"sym_{me['api_key']['prefix']}_")
    as_served = {**me, "api_key": SimpleNamespace(**me["api_key"], scopes_codes=me["api_key"]["scopes"])}
    assert MeSerializer(as_served).data == me  # the schema's serializer renders these values unchanged


def test_the_sso_map_binds_roles_in_projects(settings: Any, user_factory: Any, alpha: Project) -> None:
    settings.SYMPHONY_OIDC_ROLE_MAP = "devs=viewer@alpha,devs=developer@nowhere,devs=analyst"
    user = user_factory(username="u")
    sync = sso_role_bindings_sync(user=user, groups={"devs"})
    assert sync.granted == ["analyst", "viewer@alpha"]
    assert sync.skipped == ["devs=developer@nowhere"]
    sso = user.role_bindings.filter(source="sso")
    assert sorted(sso.values_list("role__name", "project__slug")) == [("analyst", None), ("viewer", "alpha")]
    settings.SYMPHONY_OIDC_ROLE_MAP = "devs=analyst"
    sync = sso_role_bindings_sync(user=user, groups={"devs"})
    assert sync.revoked == ["viewer@alpha"]
    assert list(sso.values_list("role__name", flat=True)) == ["analyst"]
