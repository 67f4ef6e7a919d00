"""Project-aware permission questions, for selectors and views.

``user.has_perm(code)`` answers globally and ``user.has_perm(code, obj)`` inside ``obj``'s project;
these helpers answer "in which projects" so querysets can be scoped in one filter.
"""

from __future__ import annotations

from typing import Any

from accounts.backends import user_codes, user_project_codes


class _AllProjects:
    """Every project: the caller holds the code globally."""

    def __contains__(self, project_id: object) -> bool:
        return True

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "ALL"


ALL = _AllProjects()


def projects_with(user: Any, code: str) -> _AllProjects | frozenset[int]:
    """``ALL`` or the ids of the projects where ``user`` (through its API key, if any) holds ``code``."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    scopes = getattr(user, "_api_key_scopes", None)
    if scopes is not None and code not in scopes:
        return frozenset()
    key_project = getattr(user, "_api_key_project_id", None)
    if code in user_codes(user):
        return ALL if key_project is None else frozenset({key_project})
    ids = {project_id for project_id, codes in user_project_codes(user).items() if code in codes}
    if key_project is not None:
        ids &= {key_project}
    return frozenset(ids)


def has_project_perm(user: Any, code: str, project: Any) -> bool:
    """Whether ``user`` holds ``code`` in ``project`` (a Project or its id)."""
    return getattr(project, "pk", project) in projects_with(user, code)


def scope(queryset: Any, user: Any, code: str, field: str = "project_id") -> Any:
    """``queryset`` limited to the projects where ``user`` holds ``code``."""
    projects = projects_with(user, code)
    if projects is ALL:
        return queryset
    return queryset.filter(**{f"{field}__in": projects})


def denial_reason(user: Any, code: str, project_id: int | None = None, *, in_any_project: bool = False) -> str:
    """Why ``user`` lacks ``code`` (in ``project_id``, or globally; ``in_any_project``: in some
    project would do): ``roles`` (its roles do not grant it there), ``api_key_scopes`` (they do,
    the key's scopes do not) or ``api_key_project`` (they do, but outside the key's project)."""
    from accounts.backends import codes_in_project

    if project_id is not None:
        by_roles = code in codes_in_project(user, project_id)
    else:
        by_roles = code in user_codes(user) or (
            in_any_project and any(code in codes for codes in user_project_codes(user).values())
        )
    key_project = getattr(user, "_api_key_project_id", None)
    if not by_roles:
        held_elsewhere = code in user_codes(user) or any(code in c for c in user_project_codes(user).values())
        if key_project is not None and held_elsewhere and project_id in (None, key_project):
            return "api_key_project"
        return "roles"
    scopes = getattr(user, "_api_key_scopes", None)
    if scopes is not None and code not in scopes:
        return "api_key_scopes"
    if key_project is not None:
        return "api_key_project"
    return "roles"


def access_explain(user: Any, code: str, project: Any = None) -> dict[str, Any]:
    """Whether ``user`` holds ``code`` (in ``project``, a Project, or globally when None), and
    through what: a list of grants ``{"kind", "role", "project", "source", "inherited_from"}``, kind
    ``role`` (``inherited_from``: the ancestor role that holds the code, when the bound role
    inherits it), ``extra_permission`` or ``superuser`` (the other keys null). Read from the database, not the
    cache: it answers for the rows as they are now. API keys play no part (a user is asked about)."""
    from django.db.models import Q

    from accounts.backends import walk_roles
    from accounts.models import Permission

    through: list[dict[str, Any]] = []
    plain = {"role": None, "project": None, "source": None, "inherited_from": None}
    if user.is_superuser:
        through.append({"kind": "superuser", **plain})
    where = Q(project__isnull=True) | (Q(project=project) if project is not None else Q(pk__in=[]))
    holders = set(Permission.objects.filter(code=code).values_list("roles__id", "roles__name"))
    holder_names = {role_id: name for role_id, name in holders if role_id is not None}
    bindings = user.role_bindings.filter(where).select_related("role", "project").order_by("role__name", "source")
    for binding in bindings:
        closure = walk_roles({binding.role_id}, upward=True)
        for role_id in sorted(closure & holder_names.keys(), key=lambda r: (r != binding.role_id, holder_names[r])):
            through.append(
                {
                    "kind": "role",
                    "role": binding.role.name,
                    "project": binding.project.slug if binding.project_id else None,
                    "source": binding.source,
                    "inherited_from": None if role_id == binding.role_id else holder_names[role_id],
                }
            )
    if user.extra_permissions.filter(code=code).exists():
        through.append({"kind": "extra_permission", **plain})
    return {"allowed": bool(through) and user.is_active, "is_active": user.is_active, "through": through}


def audit_project_scope(user: Any, code: str) -> list[str] | None:
    """For the audit trail: None when ``user`` holds ``code`` everywhere, else the slugs of the
    projects where it does (registered into ``audit.selectors`` at start-up)."""
    from accounts.models import Project

    projects = projects_with(user, code)
    if projects is ALL:
        return None
    return list(Project.objects.filter(pk__in=projects).values_list("slug", flat=True)) if projects else []
