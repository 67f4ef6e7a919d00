"""Reads shared by the API and the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from accounts.models import ApiKey, Permission, Project, Role, RoleBinding, User


def permission_list() -> QuerySet[Permission]:
    return Permission.objects.order_by("code")


def role_list() -> QuerySet[Role]:
    return Role.objects.prefetch_related("permissions", "parents").order_by("name")


def role_effective_map() -> dict[int, list[str]]:
    """Every role's effective codes (own plus inherited, sorted), in two queries.

    Roles are few, so computing the closure in Python beats one query per role in a list.
    """
    parents: dict[int, set[int]] = {}
    for child, parent in Role.parents.through.objects.values_list("from_role_id", "to_role_id"):
        parents.setdefault(child, set()).add(parent)
    own: dict[int, set[str]] = {}
    for role_id, code in Role.permissions.through.objects.values_list("role_id", "permission__code"):
        own.setdefault(role_id, set()).add(code)
    result: dict[int, list[str]] = {}
    for role_id in Role.objects.values_list("id", flat=True):
        seen, frontier = set(), {role_id}
        while frontier:
            seen |= frontier
            frontier = set().union(*(parents.get(r, set()) for r in frontier)) - seen
        result[role_id] = sorted(set().union(*(own.get(r, set()) for r in seen)))
    return result


def project_list(*, viewer: Any) -> QuerySet[Project]:
    """The projects ``viewer`` may act in: all of them for a holder of any global permission, else
    those of its project bindings; through a key restricted to a project, that one at most."""
    from accounts.backends import user_codes, user_project_codes

    projects = Project.objects.order_by("slug")
    scopes = getattr(viewer, "_api_key_scopes", None)
    key_project = getattr(viewer, "_api_key_project_id", None)

    def usable(codes: frozenset[str]) -> bool:
        return bool(codes & scopes if scopes is not None else codes)

    if key_project is not None:
        projects = projects.filter(pk=key_project)
    if usable(user_codes(viewer)):
        return projects
    return projects.filter(pk__in=[pid for pid, codes in user_project_codes(viewer).items() if usable(codes)])


def user_list() -> QuerySet[User]:
    bindings = Prefetch("role_bindings", queryset=RoleBinding.objects.select_related("role", "project"))
    return User.objects.prefetch_related(bindings, "extra_permissions").order_by("username")


def api_key_list(*, viewer: Any) -> QuerySet[ApiKey]:
    """The viewer's own keys, or everyone's when the viewer holds ``user:read``."""
    keys = ApiKey.objects.select_related("owner", "rotated_to").prefetch_related("scopes").order_by("-created_at")
    if viewer.has_perm("user:read"):
        return keys
    return keys.filter(owner=viewer)
