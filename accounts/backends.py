"""The RBAC authentication backend: ``user.has_perm()`` for catalog codes and Django model perms."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache

from accounts import catalog

log = structlog.get_logger(__name__)

#: The cache key of the permission generation counter (read with other entries in one round trip).
GENERATION_KEY = "rbac:generation"


def permissions_generation() -> int:
    """The current generation of cached permissions; bumping it invalidates every user's cache."""
    generation = cache.get(GENERATION_KEY)
    if generation is None:
        cache.add(GENERATION_KEY, 1, timeout=None)
        generation = cache.get(GENERATION_KEY) or 1
    return generation


#: Set while work that will be rolled back runs (``uncached_permissions``).
_uncached: ContextVar[bool] = ContextVar("symphony_uncached_permissions", default=False)


@contextmanager
def uncached_permissions() -> Iterator[None]:
    """Compute permissions from the database, cache nothing and invalidate nothing, inside.

    For work that is always rolled back, such as the admin forms' dry runs of the services: what
    they see is never committed, so it must not reach the shared cache, and a rolled-back change
    must not drop every process's cached permissions either.
    """
    token = _uncached.set(True)
    try:
        yield
    finally:
        _uncached.reset(token)


def invalidate_permissions() -> None:
    """Drop every cached permission set. Call after any change to roles, grants or users' roles."""
    if _uncached.get():
        return
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # not set yet (or evicted): the next read starts a fresh generation
        cache.set(GENERATION_KEY, 1, timeout=None)
    except Exception:
        log.warning("permission_cache_invalidation_failed", exc_info=True)


def role_closure(role_ids: set[int]) -> set[int]:
    """The given roles plus every ancestor through ``Role.parents``."""
    return walk_roles(role_ids, upward=True)


def walk_roles(role_ids: set[int], *, upward: bool) -> set[int]:
    """The given roles plus every ancestor (``upward``) or every descendant, one query per level."""
    from accounts.models import Role

    links = Role.parents.through.objects
    source, target = ("from_role_id", "to_role_id") if upward else ("to_role_id", "from_role_id")
    seen: set[int] = set()
    frontier = set(role_ids)
    while frontier:
        seen |= frontier
        frontier = set(links.filter(**{f"{source}__in": frontier}).values_list(target, flat=True)) - seen
    return seen


def compute_user_codes(user: Any) -> frozenset[str]:
    """Global catalog codes of an active user: global role bindings (with inheritance) and extra grants."""
    from accounts.models import Permission

    if not user.is_active:
        return frozenset()
    if user.is_superuser:
        return frozenset(catalog.ALL)
    role_ids = role_closure(set(user.role_bindings.filter(project__isnull=True).values_list("role_id", flat=True)))
    codes = set(Permission.objects.filter(roles__id__in=role_ids).values_list("code", flat=True))
    codes |= set(user.extra_permissions.values_list("code", flat=True))
    return frozenset(codes)


def user_codes(user: Any) -> frozenset[str]:
    """Cached effective catalog codes of ``user`` (two cache reads when warm, no query)."""
    cached = getattr(user, "_rbac_codes", None)
    if cached is not None:
        return cached
    if _uncached.get():
        return compute_user_codes(user)
    key = f"rbac:user:{user.pk}:{permissions_generation()}"
    codes = cache.get(key)
    if codes is None:
        codes = compute_user_codes(user)
        cache.set(key, codes, timeout=settings.SYMPHONY_PERMISSION_CACHE_SECONDS)
    user._rbac_codes = codes
    return codes


def compute_project_codes(user: Any) -> dict[int, frozenset[str]]:
    """Codes ``user`` holds in each project through project role bindings (global codes not included)."""
    from accounts.models import Permission, RoleBinding

    if not user.is_active or user.is_superuser:
        return {}
    roles: dict[int, set[int]] = {}
    bindings = RoleBinding.objects.filter(user_id=user.pk, project__isnull=False).values_list("project_id", "role_id")
    for project_id, role_id in bindings:
        roles.setdefault(project_id, set()).add(role_id)
    return {
        project_id: frozenset(
            Permission.objects.filter(roles__id__in=role_closure(ids)).values_list("code", flat=True).distinct()
        )
        for project_id, ids in roles.items()
    }


def user_project_codes(user: Any) -> dict[int, frozenset[str]]:
    """Cached ``compute_project_codes`` under the same generation as ``user_codes`` (no query when warm)."""
    cached = getattr(user, "_rbac_project_codes", None)
    if cached is not None:
        return cached
    if _uncached.get():
        return compute_project_codes(user)
    key = f"rbac:projects:{user.pk}:{permissions_generation()}"
    codes = cache.get(key)
    if codes is None:
        codes = compute_project_codes(user)
        cache.set(key, codes, timeout=settings.SYMPHONY_PERMISSION_CACHE_SECONDS)
    user._rbac_project_codes = codes
    return codes


def object_project_id(obj: Any) -> int | None:
    """The project an object belongs to: a Project's own id, a project-owned row's ``project_id``."""
    if obj is None:
        return None
    if getattr(getattr(obj, "_meta", None), "label_lower", "") == "accounts.project":
        return obj.pk
    return getattr(obj, "project_id", None)


def codes_in_project(user: Any, project_id: int | None) -> frozenset[str]:
    """Codes ``user`` holds in ``project_id`` (global ones included), before any API key limit."""
    codes = user_codes(user)
    if project_id is None:
        return codes
    return codes | user_project_codes(user).get(project_id, frozenset())


def user_role_names(user: Any) -> list[str]:
    """Cached sorted names of the roles ``user`` holds directly (no query when warm)."""
    cached = getattr(user, "_rbac_role_names", None)
    if cached is not None:
        return cached
    if _uncached.get():
        return sorted(user.roles.values_list("name", flat=True))
    key = f"rbac:roles:{user.pk}:{permissions_generation()}"
    names = cache.get(key)
    if names is None:
        names = sorted(set(user.roles.values_list("name", flat=True)))  # a role may be bound manually and by SSO
        cache.set(key, names, timeout=settings.SYMPHONY_PERMISSION_CACHE_SECONDS)
    user._rbac_role_names = names
    return names


class RBACBackend(ModelBackend):
    """Answers ``has_perm`` from roles for catalog codes and for the Django permissions they map to.

    When the request was authenticated with an API key, the key's scopes are attached to the user
    object (``_api_key_scopes``) and permissions are the intersection: a key never does more than
    its scopes, nor more than its owner may do now.
    """

    def user_can_authenticate(self, user: Any) -> bool:
        # SYMPHONY_OIDC_ONLY: passwords (and the sessions they opened) for superusers only, the
        # break-glass accounts; everyone else signs in through the OIDC provider.
        if settings.SYMPHONY_OIDC_ONLY and not getattr(user, "is_superuser", False):
            return False
        return super().user_can_authenticate(user)

    def get_user_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        return set()

    def get_group_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        return set()

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        """Global permissions without ``obj``; with a Project or a project-owned ``obj``, those held
        in its project (global and project bindings). A key restricted to a project acts in that
        project only: its permissions without ``obj`` are those held there."""
        if not user_obj.is_active or user_obj.is_anonymous:
            return set()
        key_project = getattr(user_obj, "_api_key_project_id", None)
        if obj is not None:
            project_id = object_project_id(obj)
            if project_id is None or (key_project is not None and project_id != key_project):
                return set()
        else:
            project_id = key_project
        codes = set(codes_in_project(user_obj, project_id))
        scopes = getattr(user_obj, "_api_key_scopes", None)
        if scopes is not None:
            codes &= scopes
        return catalog.expand(codes)

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return any(perm.startswith(f"{app_label}.") for perm in self.get_all_permissions(user_obj))
