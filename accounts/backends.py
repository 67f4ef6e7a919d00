"""The RBAC authentication backend: ``user.has_perm()`` for catalog codes and Django model perms."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import DEFAULT_CACHE_ALIAS, cache

from accounts import catalog

log = structlog.get_logger(__name__)

#: The cache key of the permission generation counter (read with other entries in one round trip).
GENERATION_KEY = "rbac:generation"

# --- the shared permission cache ----------------------------------------------------------------------
#
# Every cached permission set and resolved key is stored with (or under) the generation it was computed
# in; any change bumps the generation, so the next request anywhere loads fresh rows. The cache is shared
# by every process (a SQLite file on the embedded default, Redis otherwise). When it cannot be reached,
# reads fall back to the database (``None`` below means "not from the cache") and identity writes are
# refused (``invalidate_permissions(strict=True)``): a change whose invalidation failed could otherwise
# leave a stale entry that is trusted again when the cache comes back (a SIGSTOP'd Redis keeps its data).
# A process that lost the cache also bumps the generation before it trusts the cache again, which covers
# a bump lost after commit and a Redis restarted from an older snapshot. docs/security.md.

_lost_cache = False  # this process failed a cache call since its last successful one


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


def _cache_lost(exc: Exception) -> None:
    global _lost_cache
    if not _lost_cache:
        log.warning("permission_cache_unreachable", error=f"{type(exc).__name__}: {str(exc)[:200]}")
    _lost_cache = True


def counters_cache_lost(alias: str, exc: Exception) -> None:
    """The rate limiter failed on cache ``alias``: when that is the permission cache, this process lost
    it too. Failing closed, such a request is refused before it reads a permission, so without this a
    process could trust a Redis restored from an older snapshot, or one that missed a bump, unchecked."""
    if alias == DEFAULT_CACHE_ALIAS:
        _cache_lost(exc)


def _fresh_generation() -> int:
    # Never restart at 1: an entry stored under an old small generation must not match a restarted
    # counter (an evicted key, a flushed cache). Milliseconds grow faster than bumps are made.
    return int(time.time() * 1000)


def _bump() -> None:
    """Increment the generation (create it when missing). Raises what the cache raises."""
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # not set (evicted, flushed, first use): start above any earlier value
        if not cache.add(GENERATION_KEY, _fresh_generation(), timeout=None):
            cache.incr(GENERATION_KEY)


def _recover() -> None:
    """Before trusting the cache again after losing it, invalidate everything cached before."""
    global _lost_cache
    if _lost_cache:
        _bump()
        _lost_cache = False
        log.warning("permission_cache_recovered")


def cache_get_many(keys: list[str]) -> dict[str, Any] | None:
    """The generation (under ``GENERATION_KEY``) and ``keys`` in one round trip; ``None`` when the
    cache is unreachable (the caller reads the database)."""
    try:
        _recover()
        return cache.get_many([GENERATION_KEY, *keys])
    except Exception as exc:  # noqa: BLE001 - any cache failure: serve from the database
        _cache_lost(exc)
        return None


def cache_set(key: str, value: Any) -> None:
    """Store ``value`` for ``SYMPHONY_PERMISSION_CACHE_SECONDS``; a failure only costs the next request a query."""
    try:
        cache.set(key, value, timeout=settings.SYMPHONY_PERMISSION_CACHE_SECONDS)
    except Exception as exc:  # noqa: BLE001
        _cache_lost(exc)


def cache_add(key: str, value: Any, timeout: int) -> bool | None:
    """``cache.add``; ``None`` when the cache is unreachable."""
    try:
        return cache.add(key, value, timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        _cache_lost(exc)
        return None


def permissions_generation() -> int | None:
    """The current generation of cached permissions (started when missing); ``None`` when the cache
    is unreachable. Bumping it invalidates every user's cached permissions and every resolved key."""
    found = cache_get_many([])
    if found is None:
        return None
    generation = found.get(GENERATION_KEY)
    if generation is not None:
        return generation
    try:
        cache.add(GENERATION_KEY, _fresh_generation(), timeout=None)
        return cache.get(GENERATION_KEY)
    except Exception as exc:  # noqa: BLE001
        _cache_lost(exc)
        return None


def invalidate_permissions(*, strict: bool = False) -> None:
    """Drop every cached permission set and resolved key. Call after any change to roles, grants,
    users' roles or status, or keys.

    With ``strict``, raise ``PermissionCacheUnavailable`` (503) when the cache cannot be reached, so the
    caller's transaction rolls back instead of committing a change that cached entries would hide.
    Otherwise log it; this process then bumps the generation as soon as the cache answers again.
    Inside ``uncached_permissions`` (work that is always rolled back) it does nothing.
    """
    if _uncached.get():
        return
    try:
        _bump()
    except Exception as exc:
        _cache_lost(exc)
        if strict:
            from accounts.exceptions import PermissionCacheUnavailable

            raise PermissionCacheUnavailable() from exc
        log.warning("permission_cache_invalidation_failed", error=f"{type(exc).__name__}")


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
    codes = _cached_per_user("user", user, compute_user_codes)
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
    codes = _cached_per_user("projects", user, compute_project_codes)
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


def _global_role_names(user: Any) -> list[str]:
    # A role may be bound manually and by SSO: one name.
    bindings = user.role_bindings.filter(project__isnull=True)
    return sorted(set(bindings.values_list("role__name", flat=True)))


def user_role_names(user: Any) -> list[str]:
    """Cached sorted names of the roles ``user`` holds directly and globally (no query when warm)."""
    cached = getattr(user, "_rbac_role_names", None)
    if cached is not None:
        return cached
    if _uncached.get():
        return _global_role_names(user)
    names = _cached_per_user("roles", user, _global_role_names)
    user._rbac_role_names = names
    return names


def _cached_per_user(kind: str, user: Any, compute: Any) -> Any:
    generation = permissions_generation()
    if generation is None:  # the cache is unreachable: straight from the database
        return compute(user)
    key = f"rbac:{kind}:{user.pk}:{generation}"
    found = cache_get_many([key])
    if found is None or found.get(GENERATION_KEY) != generation:  # unreachable, or bumped meanwhile
        return compute(user)
    value = found.get(key)
    if value is None:
        value = compute(user)
        cache_set(key, value)
    return value


def _project_role_names(user: Any) -> dict[str, tuple[int, list[str]]]:
    rows = user.role_bindings.filter(project__isnull=False).values_list("project__slug", "project_id", "role__name")
    found: dict[str, tuple[int, set[str]]] = {}
    for slug, project_id, name in rows:
        found.setdefault(slug, (project_id, set()))[1].add(name)
    return {slug: (project_id, sorted(names)) for slug, (project_id, names) in sorted(found.items())}


def user_project_role_names(user: Any) -> dict[str, tuple[int, list[str]]]:
    """Cached ``{project slug: (project id, sorted role names)}`` of ``user``'s project bindings
    (no query when warm)."""
    cached = getattr(user, "_rbac_project_role_names", None)
    if cached is not None:
        return cached
    if _uncached.get():
        return _project_role_names(user)
    names = _cached_per_user("projectroles", user, _project_role_names)
    user._rbac_project_role_names = names
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
