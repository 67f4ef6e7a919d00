"""What the identity services share: reading what an actor holds, resolving identifiers,
the escalation rules, cache invalidation and the last-super-admin guard."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from accounts import catalog
from accounts.backends import invalidate_permissions, role_closure, user_codes, walk_roles
from accounts.exceptions import (
    EscalationRefused,
    LastSuperAdmin,
)
from accounts.models import Permission, Role, User

SUPER_ADMIN = "super_admin"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


# --- reading what an actor holds ------------------------------------------------------------------


def held_codes(actor: Any) -> frozenset[str]:
    """What ``actor`` may grant: their effective codes, narrowed to the key's scopes when the request
    came with an API key. ``None`` is the system and holds everything."""
    if actor is None:
        return frozenset(catalog.ALL)
    codes = user_codes(actor)
    scopes = getattr(actor, "_api_key_scopes", None)
    return codes & scopes if scopes is not None else codes


def role_effective_codes(role_ids: Iterable[int]) -> set[str]:
    """Catalog codes of the given roles and all their ancestors."""
    closure = role_closure(set(role_ids))
    return set(Permission.objects.filter(roles__id__in=closure).values_list("code", flat=True).distinct())


def _potential_codes(user: User) -> set[str]:
    """What ``user`` would hold if active: a deactivated superuser still outranks an admin."""
    if user.is_superuser:
        return set(catalog.ALL)
    codes = role_effective_codes(user.roles.values_list("id", flat=True))
    return codes | set(user.extra_permissions.values_list("code", flat=True))


def _require_held(actor: Any, codes: Iterable[str], *, field: str, what: str) -> None:
    beyond = sorted(set(codes) - held_codes(actor))
    if beyond:
        raise EscalationRefused(f"You cannot grant {what} you do not hold: {', '.join(beyond)}.", field=field)


def _require_outranks(actor: Any, user: User) -> None:
    """Refuse changing a user who holds permissions the actor does not (an admin editing a super admin)."""
    if actor is None or actor.pk == user.pk:
        return
    beyond = sorted(_potential_codes(user) - held_codes(actor))
    if beyond:
        raise EscalationRefused(
            f"You cannot change user '{user.get_username()}', who holds permissions you do not: {', '.join(beyond)}."
        )


def user_require_manageable(*, actor: Any, user: User) -> None:
    """Raise ``EscalationRefused`` when ``user`` holds permissions ``actor`` does not (so the actor
    may not change, delete or set a password for them)."""
    _require_outranks(actor, user)


# --- resolving identifiers ------------------------------------------------------------------------


def _resolve(model: Any, key: str, values: Iterable[Any], *, field: str, what: str) -> list[Any]:
    """Instances of ``model`` for ``values`` (instances, or their ``key`` as strings), sorted by key.
    Raises ``ValidationError`` on ``field`` naming every unknown identifier."""
    values = list(values)
    wanted = {v for v in values if isinstance(v, str)}
    found = {getattr(obj, key): obj for obj in model.objects.filter(**{f"{key}__in": wanted})}
    unknown = sorted(wanted - found.keys())
    if unknown:
        raise ValidationError({field: [f"Unknown {what}: {', '.join(unknown)}."]})
    resolved = {getattr(obj, key): obj for obj in (found[v] if isinstance(v, str) else v for v in values)}
    return [resolved[k] for k in sorted(resolved)]


def _permissions(values: Iterable[Permission | str], *, field: str) -> list[Permission]:
    return _resolve(Permission, "code", values, field=field, what="permission code(s)")


def _roles(values: Iterable[Role | str], *, field: str) -> list[Role]:
    return _resolve(Role, "name", values, field=field, what="role(s)")


# --- cache and the last super admin ----------------------------------------------------------------


def _invalidate_on_commit() -> None:
    # Once now (so a check inside this transaction sees the change) and once after commit (so a
    # value another request computed from the old rows in between does not survive it). The first
    # is strict: when the shared cache cannot be reached, the change is refused (503) and rolls back.
    invalidate_permissions(strict=True)
    transaction.on_commit(invalidate_permissions)


def _super_admin_ids() -> set[int]:
    """Active users holding super_admin (directly or through a role inheriting it), or is_superuser.

    Takes a row lock on the super_admin role first, so two concurrent demotions of the last two
    super admins are serialised and the second one sees the first.
    """
    super_role = Role.objects.select_for_update().filter(name=SUPER_ADMIN).first()
    role_ids = _descendants({super_role.pk}) if super_role else set()
    return set(
        User.objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(roles__id__in=role_ids))
        .values_list("pk", flat=True)
        .distinct()
    )


def _descendants(role_ids: set[int]) -> set[int]:
    return walk_roles(role_ids, upward=False)


def _guard_super_admins(before: set[int], *, field: str) -> None:
    if before and not _super_admin_ids():
        raise LastSuperAdmin(
            "This change would leave no active super admin (a user with the super_admin role or superuser "
            "status); grant it to someone else first.",
            field=field,
        )
