"""What the identity services share: reading what an actor holds, resolving identifiers,
the escalation rules, partial updates, cache invalidation and the last-super-admin guard.

Everything here is public to the other modules of ``accounts.services`` (and documented); the
leading-underscore names stay private to this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Model, Q, QuerySet

from accounts import catalog
from accounts.backends import invalidate_permissions, role_closure, user_codes, walk_roles
from accounts.exceptions import DeletedConcurrently, EscalationRefused, LastSuperAdmin
from accounts.models import Permission, Role, User

SUPER_ADMIN = "super_admin"

M = TypeVar("M", bound=Model)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: Default of the optional arguments of partial updates: "not given", as opposed to None or "".
UNSET: Any = _Unset()


# --- reading what an actor holds ------------------------------------------------------------------


def held_codes(actor: User | None) -> frozenset[str]:
    """What ``actor`` may grant: their effective codes, narrowed to the key's scopes when the request
    came with an API key. ``None`` is the system and holds everything."""
    if actor is None:
        return frozenset(catalog.ALL)
    codes = user_codes(actor)
    scopes = getattr(actor, "_api_key_scopes", None)
    return codes & scopes if scopes is not None else codes


def held_codes_in(actor: User | None, project: Any) -> frozenset[str]:
    """What ``actor`` may grant in ``project`` (a Project, an id, or None for globally): codes held
    there (global ones included), narrowed to the key's scopes; a key restricted to a project holds
    nothing elsewhere, and nothing globally."""
    if project is None:
        if actor is not None and getattr(actor, "_api_key_project_id", None) is not None:
            return frozenset()
        return held_codes(actor)
    if actor is None:
        return frozenset(catalog.ALL)
    from accounts.backends import codes_in_project

    project_id = getattr(project, "pk", project)
    key_project = getattr(actor, "_api_key_project_id", None)
    if key_project is not None and key_project != project_id:
        return frozenset()
    codes = codes_in_project(actor, project_id)
    scopes = getattr(actor, "_api_key_scopes", None)
    return codes & scopes if scopes is not None else codes


def held_codes_anywhere(actor: User | None) -> frozenset[str]:
    """``held_codes`` plus what ``actor`` holds in any project: what a key's scopes may name (the key
    still acts only where the owner holds each code). Never use it for granting roles."""
    if actor is None:
        return frozenset(catalog.ALL)
    from accounts.backends import user_project_codes

    codes = set(user_codes(actor))
    for project_codes in user_project_codes(actor).values():
        codes |= project_codes
    scopes = getattr(actor, "_api_key_scopes", None)
    return frozenset(codes & scopes if scopes is not None else codes)


def role_effective_codes(role_ids: Iterable[int]) -> set[str]:
    """Catalog codes of the given roles and all their ancestors."""
    closure = role_closure(set(role_ids))
    return set(Permission.objects.filter(roles__id__in=closure).values_list("code", flat=True).distinct())


def _potential_codes(user: User) -> dict[int | None, set[str]]:
    """What ``user`` would hold if active, globally (key None) and in each project of its bindings:
    a deactivated superuser still outranks an admin."""
    from accounts.models import RoleBinding

    if user.is_superuser:
        return {None: set(catalog.ALL)}
    by_project: dict[int | None, set[int]] = {None: set()}
    for project_id, role_id in RoleBinding.objects.filter(user=user).values_list("project_id", "role_id"):
        by_project.setdefault(project_id, set()).add(role_id)
    codes = {project_id: role_effective_codes(ids) for project_id, ids in by_project.items()}
    codes[None] |= set(user.extra_permissions.values_list("code", flat=True))
    return codes


def require_held(
    actor: User | None,
    codes: Iterable[str],
    *,
    field: str,
    what: str,
    anywhere: bool = False,
) -> None:
    """Raise ``EscalationRefused`` on ``field`` naming every one of ``codes`` that ``actor`` does
    not hold (``held_codes``; with ``anywhere``, ``held_codes_anywhere``); ``what`` says what was
    asked for ("scope(s)", "permissions")."""
    held = held_codes_anywhere(actor) if anywhere else held_codes(actor)
    beyond = sorted(set(codes) - held)
    if beyond:
        raise EscalationRefused(f"You cannot grant {what} you do not hold: {', '.join(beyond)}.", field=field)


def user_require_manageable(*, actor: User | None, user: User) -> None:
    """Raise ``EscalationRefused`` when ``user`` holds permissions ``actor`` does not, globally or in
    one of the user's projects (so the actor may not change, delete or set a password for them).
    Users may always manage themselves, and the system (``None``) anyone."""
    if actor is None or actor.pk == user.pk:
        return
    beyond: set[str] = set()
    for project_id, codes in _potential_codes(user).items():
        beyond |= codes - (held_codes(actor) if project_id is None else held_codes_in(actor, project_id))
    beyond = sorted(beyond)
    if beyond:
        raise EscalationRefused(
            f"You cannot change user '{user.get_username()}', who holds permissions you do not: {', '.join(beyond)}."
        )


# --- resolving identifiers ------------------------------------------------------------------------


def _resolve(model: type[M], key: str, values: Iterable[M | str], *, field: str, what: str) -> list[M]:
    """Instances of ``model`` for ``values`` (instances, or their ``key`` as strings), sorted by key.
    Raises ``ValidationError`` on ``field`` naming every unknown identifier."""
    values = list(values)
    wanted = {v for v in values if isinstance(v, str)}
    found = {getattr(obj, key): obj for obj in model._default_manager.filter(**{f"{key}__in": wanted})}
    unknown = sorted(wanted - found.keys())
    if unknown:
        raise ValidationError({field: [f"Unknown {what}: {', '.join(unknown)}."]})
    resolved = {getattr(obj, key): obj for obj in (found[v] if isinstance(v, str) else v for v in values)}
    return [resolved[k] for k in sorted(resolved)]


def resolve_permissions(values: Iterable[Permission | str], *, field: str) -> list[Permission]:
    """Permissions for ``values`` (instances or codes), sorted by code. Raises ``ValidationError``
    on ``field`` naming every unknown code."""
    return _resolve(Permission, "code", values, field=field, what="permission code(s)")


def resolve_roles(values: Iterable[Role | str], *, field: str) -> list[Role]:
    """Roles for ``values`` (instances or names), sorted by name. Raises ``ValidationError`` on
    ``field`` naming every unknown role."""
    return _resolve(Role, "name", values, field=field, what="role(s)")


def resolve_bindings(values: Iterable[Any], *, field: str) -> list[tuple[Role, Any]]:
    """(role, project) pairs for ``values``: roles, (role, project) pairs, or names spelled ``role``
    (global) or ``role@project`` (in the project of that slug). Raises ``ValidationError`` on
    ``field`` naming every unknown role and project."""
    from accounts.models import Project

    parsed: list[tuple[Any, Any]] = []
    for value in values:
        if isinstance(value, tuple):
            parsed.append(value)
        elif isinstance(value, str) and "@" in value:
            role, _, slug = value.partition("@")
            parsed.append((role, slug))
        else:
            parsed.append((value, None))
    roles = {r.name: r for r in resolve_roles([r for r, _ in parsed], field=field)}
    slugs = {p for _, p in parsed if isinstance(p, str)}
    projects = {p.slug: p for p in Project.objects.filter(slug__in=slugs)}
    unknown = sorted(slugs - projects.keys())
    if unknown:
        raise ValidationError({field: [f"Unknown project(s): {', '.join(unknown)}."]})
    return [(roles[getattr(r, "name", r)], projects[p] if isinstance(p, str) else p) for r, p in parsed]


# --- partial updates ------------------------------------------------------------------------------


def lock_row(queryset: QuerySet[M], pk: Any) -> M:
    """Row ``pk`` of ``queryset``, locked (``SELECT ... FOR UPDATE``) until the transaction ends.

    Raises ``DeletedConcurrently`` when the row is gone: a request that deleted it committed
    while this one waited for the lock (or between this request's read and now).
    """
    try:
        return queryset.select_for_update().get(pk=pk)
    except queryset.model.DoesNotExist:
        name = queryset.model._meta.verbose_name
        raise DeletedConcurrently(f"This {name} was deleted by another request; nothing was changed.") from None


def save_fields(obj: Model, fields: Iterable[str]) -> None:
    """Write only ``fields`` of ``obj``: the one idiom for partial updates (``save(update_fields=)``).

    Raises ``DeletedConcurrently`` when the row is gone (another request deleted it: Django 5.2
    raises a bare ``DatabaseError``, "did not affect any rows"). Every other database error, an
    outage included, propagates unchanged.
    """
    try:
        obj.save(update_fields=list(fields))
    except DatabaseError as exc:
        if type(exc) is not DatabaseError:  # OperationalError, IntegrityError, ...: not a missing row
            raise
        name = obj._meta.verbose_name
        raise DeletedConcurrently(f"This {name} was deleted by another request; nothing was changed.") from None


# --- cache and the last super admin ----------------------------------------------------------------


def invalidate_on_commit() -> None:
    """Drop every cached effective permission (and resolved API key) now and again at commit."""
    # Once now (so a check inside this transaction sees the change) and once after commit (so a
    # value another request computed from the old rows in between does not survive it). The first
    # is strict: when the shared cache cannot be reached, the change is refused (503) and rolls back.
    invalidate_permissions(strict=True)
    transaction.on_commit(invalidate_permissions)


def super_admin_ids() -> set[int]:
    """Active users holding super_admin (directly or through a role inheriting it), or is_superuser.

    Takes a row lock on the super_admin role first, so two concurrent demotions of the last two
    super admins are serialised and the second one sees the first. Call it inside the transaction,
    before the change, and pass the result to ``guard_super_admins`` after it.
    """
    super_role = Role.objects.select_for_update().filter(name=SUPER_ADMIN).first()
    role_ids = walk_roles({super_role.pk}, upward=False) if super_role else set()
    return set(
        User.objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(role_bindings__role_id__in=role_ids, role_bindings__project__isnull=True))
        .values_list("pk", flat=True)
        .distinct()
    )


def guard_super_admins(before: set[int], *, field: str) -> None:
    """Raise ``LastSuperAdmin`` on ``field`` when there were super admins (``before``, from
    ``super_admin_ids``) and the change made in this transaction left none."""
    if before and not super_admin_ids():
        raise LastSuperAdmin(
            "This change would leave no active super admin (a user with the super_admin role or superuser "
            "status); grant it to someone else first.",
            field=field,
        )
