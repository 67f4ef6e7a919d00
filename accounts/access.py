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
