"""Writes on identity: roles, users, their grants, and API keys.

Every service is keyword-only, atomic, audited inside its transaction, and refuses escalation: an
actor never grants a role, permission, key scope or superuser status beyond what they hold now
(through an API key: what the key may do). ``actor=None`` means the system itself (migrations,
``ensure_admin``) and is never refused. Effective-permission caches are dropped when the change
commits (and once right away, so nothing recomputed mid-transaction survives the commit).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

import audit
from accounts import catalog, keys
from accounts.backends import invalidate_permissions, role_closure, user_codes
from accounts.exceptions import (
    ApiKeyStateConflict,
    EscalationRefused,
    LastSuperAdmin,
    SystemRoleProtected,
)
from accounts.models import ApiKey, Permission, Role, User

__all__ = [
    "EscalationRefused",
    "api_key_create",
    "api_key_revoke",
    "api_key_rotate",
    "held_codes",
    "permission_grant",
    "permission_revoke",
    "role_create",
    "role_delete",
    "role_effective_codes",
    "role_grant",
    "role_revoke",
    "role_update",
    "user_create",
    "user_delete",
    "user_require_manageable",
    "user_set_password",
    "user_update",
]

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


def _permissions(values: Iterable[Permission | str], *, field: str) -> list[Permission]:
    values = list(values)
    codes = {v for v in values if isinstance(v, str)}
    found = {p.code: p for p in Permission.objects.filter(code__in=codes)}
    unknown = sorted(codes - found.keys())
    if unknown:
        raise ValidationError({field: [f"Unknown permission code(s): {', '.join(unknown)}."]})
    resolved = {(found[v] if isinstance(v, str) else v).code: (found[v] if isinstance(v, str) else v) for v in values}
    return [resolved[code] for code in sorted(resolved)]


def _roles(values: Iterable[Role | str], *, field: str) -> list[Role]:
    values = list(values)
    names = {v for v in values if isinstance(v, str)}
    found = {r.name: r for r in Role.objects.filter(name__in=names)}
    unknown = sorted(names - found.keys())
    if unknown:
        raise ValidationError({field: [f"Unknown role(s): {', '.join(unknown)}."]})
    resolved = {(found[v] if isinstance(v, str) else v).name: (found[v] if isinstance(v, str) else v) for v in values}
    return [resolved[name] for name in sorted(resolved)]


# --- cache and the last super admin ----------------------------------------------------------------


def _invalidate_on_commit() -> None:
    # Once now (so a check inside this transaction sees the change) and once after commit (so a
    # value another request computed from the old rows in between does not survive it).
    invalidate_permissions()
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
    seen: set[int] = set()
    frontier = set(role_ids)
    while frontier:
        seen |= frontier
        children = set(
            Role.parents.through.objects.filter(to_role_id__in=frontier).values_list("from_role_id", flat=True)
        )
        frontier = children - seen
    return seen


def _guard_super_admins(before: set[int], *, field: str) -> None:
    if before and not _super_admin_ids():
        raise LastSuperAdmin(
            "This change would leave no active super admin (a user with the super_admin role or superuser "
            "status); grant it to someone else first.",
            field=field,
        )


# --- roles --------------------------------------------------------------------------------------


def _check_parents(role: Role | None, parents: list[Role]) -> None:
    if role is None or role.pk is None:
        return
    if any(parent.pk == role.pk for parent in parents):
        raise ValidationError({"parents": [f"Role '{role.name}' cannot inherit from itself."]})
    if role.pk in role_closure({p.pk for p in parents}):
        raise ValidationError({"parents": [f"Inheriting from these roles would create a cycle through '{role.name}'."]})


def _save_role(role: Role) -> None:
    role.full_clean(exclude=["permissions", "parents"])
    try:
        with transaction.atomic():
            role.save()
    except IntegrityError:  # a concurrent create won the unique name between full_clean and save
        raise ValidationError({"name": ["A role with this name already exists."]}) from None


@transaction.atomic
def role_create(
    *,
    actor: Any,
    name: str,
    description: str = "",
    permissions: Iterable[Permission | str] = (),
    parents: Iterable[Role | str] = (),
) -> Role:
    """Create a custom role. Raises ``ValidationError`` (name, permissions, parents) and
    ``EscalationRefused`` when the role would hold permissions the actor does not."""
    perms = _permissions(permissions, field="permissions")
    parent_roles = _roles(parents, field="parents")
    _require_held(actor, [p.code for p in perms], field="permissions", what="permissions")
    _require_held(
        actor, role_effective_codes(r.pk for r in parent_roles), field="parents", what="inherited permissions"
    )
    role = Role(name=name, description=description)
    _save_role(role)
    role.permissions.set(perms)
    role.parents.set(parent_roles)
    audit.record(
        "role.created",
        actor=actor,
        resource=role,
        details={"name": name, "permissions": [p.code for p in perms], "parents": [r.name for r in parent_roles]},
    )
    _invalidate_on_commit()
    return role


@transaction.atomic
def role_update(
    *,
    actor: Any,
    role: Role,
    name: str = UNSET,
    description: str = UNSET,
    permissions: Iterable[Permission | str] = UNSET,
    parents: Iterable[Role | str] = UNSET,
) -> Role:
    """Change a role; only the given fields change. System roles keep their name, and super_admin
    keeps every permission. Raises ``ValidationError`` (unknown codes or names, cycles, duplicate
    name), ``SystemRoleProtected``, ``EscalationRefused`` and ``LastSuperAdmin``."""
    before_admins = _super_admin_ids()
    role = Role.objects.select_for_update().get(pk=role.pk)
    old_perms = set(role.permissions.values_list("code", flat=True))
    old_parents = set(role.parents.values_list("name", flat=True))
    old_effective = role_effective_codes([role.pk])
    changes: dict[str, Any] = {}

    if name is not UNSET and name != role.name:
        if role.is_system:
            raise SystemRoleProtected(f"System role '{role.name}' cannot be renamed.", field="name")
        changes["name"] = [role.name, name]
        role.name = name
    if description is not UNSET and description != role.description:
        changes["description"] = [role.description, description]
        role.description = description
    if changes:
        _save_role(role)

    if permissions is not UNSET:
        perms = _permissions(permissions, field="permissions")
        codes = {p.code for p in perms}
        if role.name == SUPER_ADMIN and codes != set(catalog.ALL):
            raise SystemRoleProtected("The super_admin role always holds every permission.", field="permissions")
        _require_held(actor, codes - old_perms, field="permissions", what="permissions")
        if codes != old_perms:
            role.permissions.set(perms)
            changes["permissions"] = {"added": sorted(codes - old_perms), "removed": sorted(old_perms - codes)}
    if parents is not UNSET:
        parent_roles = _roles(parents, field="parents")
        _check_parents(role, parent_roles)
        names = {r.name for r in parent_roles}
        if names != old_parents:
            role.parents.set(parent_roles)
            changes["parents"] = {"added": sorted(names - old_parents), "removed": sorted(old_parents - names)}

    gained = role_effective_codes([role.pk]) - old_effective
    _require_held(actor, gained, field="parents" if "parents" in changes else "permissions", what="permissions")
    if changes:
        role.save(update_fields=["updated_at"])
        audit.record("role.updated", actor=actor, resource=role, details={"name": role.name, "changes": changes})
        _guard_super_admins(before_admins, field="parents")
        _invalidate_on_commit()
    return role


@transaction.atomic
def role_delete(*, actor: Any, role: Role) -> None:
    """Delete a custom role. Raises ``SystemRoleProtected`` for a system role, ``EscalationRefused``
    when the actor does not hold what the role grants (deleting it would demote its holders), and
    ``LastSuperAdmin``."""
    if role.is_system:
        raise SystemRoleProtected(f"System role '{role.name}' cannot be deleted.", field="name")
    before_admins = _super_admin_ids()
    _require_held(actor, role_effective_codes([role.pk]), field="name", what="a role with permissions")
    details = {"name": role.name, "users": role.users.count()}
    role_id = role.pk
    role.delete()
    audit.record("role.deleted", actor=actor, resource_type="accounts.role", resource_id=role_id, details=details)
    _guard_super_admins(before_admins, field="name")
    _invalidate_on_commit()


# --- user grants ----------------------------------------------------------------------------------


def _set_roles(*, actor: Any, user: User, roles: list[Role]) -> None:
    current = {r.pk: r for r in user.roles.all()}
    wanted = {r.pk: r for r in roles}
    added = [wanted[pk] for pk in wanted.keys() - current.keys()]
    removed = [current[pk] for pk in current.keys() - wanted.keys()]
    _require_held(actor, role_effective_codes(r.pk for r in added), field="roles", what="roles with permissions")
    if added:
        user.roles.add(*added)
    if removed:
        user.roles.remove(*removed)
    for role in sorted(added, key=lambda r: r.name):
        audit.record("authz.role.assigned", actor=actor, resource=user, details=_grant(user, role=role.name))
    for role in sorted(removed, key=lambda r: r.name):
        audit.record("authz.role.revoked", actor=actor, resource=user, details=_grant(user, role=role.name))


def _set_extra_permissions(*, actor: Any, user: User, permissions: list[Permission]) -> None:
    current = {p.code: p for p in user.extra_permissions.all()}
    wanted = {p.code: p for p in permissions}
    added = sorted(wanted.keys() - current.keys())
    removed = sorted(current.keys() - wanted.keys())
    _require_held(actor, added, field="extra_permissions", what="permissions")
    if added:
        user.extra_permissions.add(*(wanted[c] for c in added))
    if removed:
        user.extra_permissions.remove(*(current[c] for c in removed))
    for code in added:
        audit.record("authz.permission.granted", actor=actor, resource=user, details=_grant(user, permission=code))
    for code in removed:
        audit.record("authz.permission.revoked", actor=actor, resource=user, details=_grant(user, permission=code))


def _grant(user: User, **what: str) -> dict[str, str]:
    return {"user": user.get_username(), **what}


@transaction.atomic
def role_grant(*, actor: Any, user: User, role: Role | str) -> User:
    """Give ``user`` a role. Raises ``ValidationError`` (roles) and ``EscalationRefused``."""
    (resolved,) = _roles([role], field="roles")
    _require_outranks(actor, user)
    _set_roles(actor=actor, user=user, roles=[*user.roles.all(), resolved])
    _invalidate_on_commit()
    return user


@transaction.atomic
def role_revoke(*, actor: Any, user: User, role: Role | str) -> User:
    """Take a role from ``user``. Raises ``ValidationError`` (roles), ``EscalationRefused`` and
    ``LastSuperAdmin``."""
    (resolved,) = _roles([role], field="roles")
    before_admins = _super_admin_ids()
    _require_outranks(actor, user)
    _set_roles(actor=actor, user=user, roles=[r for r in user.roles.all() if r.pk != resolved.pk])
    _guard_super_admins(before_admins, field="roles")
    _invalidate_on_commit()
    return user


@transaction.atomic
def permission_grant(*, actor: Any, user: User, permission: Permission | str) -> User:
    """Give ``user`` an extra permission. Raises ``ValidationError`` and ``EscalationRefused``."""
    (resolved,) = _permissions([permission], field="extra_permissions")
    _require_outranks(actor, user)
    _set_extra_permissions(actor=actor, user=user, permissions=[*user.extra_permissions.all(), resolved])
    _invalidate_on_commit()
    return user


@transaction.atomic
def permission_revoke(*, actor: Any, user: User, permission: Permission | str) -> User:
    """Take an extra permission from ``user``. Raises ``ValidationError`` and ``EscalationRefused``."""
    (resolved,) = _permissions([permission], field="extra_permissions")
    _require_outranks(actor, user)
    remaining = [p for p in user.extra_permissions.all() if p.pk != resolved.pk]
    _set_extra_permissions(actor=actor, user=user, permissions=remaining)
    _invalidate_on_commit()
    return user


# --- users ----------------------------------------------------------------------------------------

_PLAIN_USER_FIELDS = ("username", "email", "first_name", "last_name", "is_active", "is_staff")


def _require_superuser_grant(actor: Any) -> None:
    _require_held(actor, catalog.ALL, field="is_superuser", what="superuser status while missing permissions")


@sensitive_variables("password")
def _apply_password(user: User, password: str | None) -> None:
    if password is None:
        return
    if password == "":
        user.set_unusable_password()
        return
    validate_password(password, user)  # raises ValidationError; re-keyed on "password" by the caller
    user.set_password(password)


@sensitive_variables("password")
def _set_password_or_raise(user: User, password: str | None) -> None:
    try:
        _apply_password(user, password)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None


def _save_user(user: User, *, update_fields: list[str] | None = None) -> None:
    user.full_clean(exclude=["password", "roles", "extra_permissions", "groups", "user_permissions"])
    try:
        with transaction.atomic():
            user.save(update_fields=update_fields)
    except IntegrityError:
        raise ValidationError({"username": ["A user with that username already exists."]}) from None


@sensitive_variables("password")
@transaction.atomic
def user_create(
    *,
    actor: Any,
    username: str,
    email: str = "",
    password: str | None = None,
    first_name: str = "",
    last_name: str = "",
    roles: Iterable[Role | str] = (),
    extra_permissions: Iterable[Permission | str] = (),
    is_active: bool = True,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """Create a user; ``password`` None or "" leaves it unusable. Raises ``ValidationError``
    (username, email, password, roles, extra_permissions) and ``EscalationRefused``."""
    role_objs = _roles(roles, field="roles")
    perm_objs = _permissions(extra_permissions, field="extra_permissions")
    if is_superuser:
        _require_superuser_grant(actor)
    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_active=is_active,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )
    user.username = User.normalize_username(username)
    user.email = User.objects.normalize_email(email)
    _set_password_or_raise(user, password or "")
    _save_user(user)
    audit.record(
        "user.created",
        actor=actor,
        resource=user,
        details={"username": user.username, "is_staff": is_staff, "is_superuser": is_superuser},
    )
    _set_roles(actor=actor, user=user, roles=role_objs)
    _set_extra_permissions(actor=actor, user=user, permissions=perm_objs)
    _invalidate_on_commit()
    return user


@sensitive_variables("password")
@transaction.atomic
def user_update(
    *,
    actor: Any,
    user: User,
    username: str = UNSET,
    email: str = UNSET,
    password: str | None = UNSET,
    first_name: str = UNSET,
    last_name: str = UNSET,
    roles: Iterable[Role | str] = UNSET,
    extra_permissions: Iterable[Permission | str] = UNSET,
    is_active: bool = UNSET,
    is_staff: bool = UNSET,
    is_superuser: bool = UNSET,
) -> User:
    """Change a user; only the given fields change. Raises ``ValidationError``, ``EscalationRefused``
    (granting what the actor lacks, or changing a user who outranks the actor) and ``LastSuperAdmin``
    (demoting or deactivating the last active super admin)."""
    before_admins = _super_admin_ids()
    user = User.objects.select_for_update().get(pk=user.pk)
    _require_outranks(actor, user)
    given = {
        "username": username,
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "is_active": is_active,
        "is_staff": is_staff,
        "is_superuser": is_superuser,
    }
    changed: dict[str, Any] = {}
    for field, value in given.items():
        if value is not UNSET and getattr(user, field) != value:
            changed[field] = [getattr(user, field), value]
            setattr(user, field, value)
    if changed.get("is_superuser", [None, False])[1] is True:
        _require_superuser_grant(actor)
    if password is not UNSET:
        _set_password_or_raise(user, password)
        changed["password"] = "changed"  # noqa: S105 - a marker, not the password
    if changed:
        _save_user(user)
    if roles is not UNSET:
        _set_roles(actor=actor, user=user, roles=_roles(roles, field="roles"))
    if extra_permissions is not UNSET:
        _set_extra_permissions(
            actor=actor, user=user, permissions=_permissions(extra_permissions, field="extra_permissions")
        )
    if changed:
        audit.record(
            "user.updated", actor=actor, resource=user, details={"username": user.username, "changes": changed}
        )
    field = "is_active" if "is_active" in changed else "is_superuser" if "is_superuser" in changed else "roles"
    _guard_super_admins(before_admins, field=field)
    _invalidate_on_commit()
    return user


@sensitive_variables("password")
def user_set_password(*, actor: Any, user: User, password: str) -> User:
    """Set a new password (the admin's password page). Raises ``ValidationError`` (password) and
    ``EscalationRefused`` when ``user`` outranks the actor."""
    return user_update(actor=actor, user=user, password=password)


@transaction.atomic
def user_delete(*, actor: Any, user: User) -> None:
    """Delete a user (their API keys go with them). Raises ``EscalationRefused`` when the user
    outranks the actor and ``LastSuperAdmin`` for the last active super admin."""
    before_admins = _super_admin_ids()
    _require_outranks(actor, user)
    if before_admins and not before_admins - {user.pk}:
        raise LastSuperAdmin("The last active super admin cannot be deleted.", field="username")
    user_id, username = user.pk, user.get_username()
    user.delete()
    audit.record(
        "user.deleted", actor=actor, resource_type="accounts.user", resource_id=user_id, details={"username": username}
    )
    _guard_super_admins(before_admins, field="username")
    _invalidate_on_commit()


# --- API keys -------------------------------------------------------------------------------------


def _require_key_manager(actor: Any, key: ApiKey) -> None:
    """Owners manage their own keys; others need user:update and must outrank the owner."""
    if actor is None or actor.pk == key.owner_id:
        return
    if "user:update" not in held_codes(actor):
        raise EscalationRefused("Only the owner, or a user with user:update, may manage this API key.")
    _require_outranks(actor, key.owner)


def _save_key(**fields: Any) -> ApiKey:
    try:
        with transaction.atomic():
            return ApiKey.objects.create(**fields)
    except IntegrityError:
        raise ValidationError({"name": ["This owner already has an active API key with this name."]}) from None


@sensitive_variables("raw")
@transaction.atomic
def api_key_create(
    *,
    owner: Any,
    name: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit: str = "",
    actor: Any = None,
) -> tuple[ApiKey, str]:
    """Create an API key for ``owner``; return ``(key, raw_key)``. The raw key exists only here.

    ``scopes`` are catalog codes; None means every permission the owner holds. Raises
    ``ValidationError`` (name, scopes, rate_limit, expires_at) for bad input and
    ``EscalationRefused`` when ``actor`` (default: the owner) does not hold every requested scope,
    or creates a key for someone else without user:update.
    """
    from accounts.validators import validate_rate_limit

    actor = actor or owner
    requested = set(scopes) if scopes is not None else set(user_codes(owner))
    found = {p.code: p for p in _permissions(requested, field="scopes")}
    _require_held(actor, found, field="scopes", what="scope(s)")
    if actor.pk != owner.pk:
        # A key for someone else acts as them: only for user:update holders who outrank them.
        if "user:update" not in held_codes(actor):
            raise EscalationRefused("Creating a key for another user needs user:update.", field="owner")
        try:
            _require_outranks(actor, owner)
        except EscalationRefused as exc:
            raise EscalationRefused(str(exc.detail), field="owner") from None
    if not name or len(name) > ApiKey._meta.get_field("name").max_length:
        raise ValidationError({"name": ["A name of 1 to 100 characters is required."]})
    try:
        validate_rate_limit(rate_limit)
    except ValidationError as exc:
        raise ValidationError({"rate_limit": exc.messages}) from None
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["Expiry must be in the future."]})
    prefix, raw = keys.generate()
    key = _save_key(
        owner=owner, name=name, prefix=prefix, key_hash=keys.hash_key(raw), expires_at=expires_at, rate_limit=rate_limit
    )
    key.scopes.set(found.values())
    audit.record(
        "apikey.created",
        actor=actor,
        resource=key,
        api_key_prefix=prefix,
        details={"name": name, "owner": owner.get_username(), "prefix": prefix, "scopes": sorted(found)},
    )
    return key, raw


@sensitive_variables("raw")
@transaction.atomic
def api_key_rotate(*, actor: Any, key: ApiKey) -> tuple[ApiKey, str]:
    """Replace ``key`` with a new one (same owner, name, scopes, rate limit and expiry); return
    ``(new_key, raw_key)``. The old key keeps working for SYMPHONY_API_KEY_ROTATION_GRACE_HOURS.

    Raises ``ApiKeyStateConflict`` for a revoked, expired or already rotated key, and
    ``EscalationRefused`` when the actor may not manage it or lacks one of its scopes.
    """
    key = ApiKey.objects.select_for_update().select_related("owner").get(pk=key.pk)
    _require_key_manager(actor, key)
    if key.revoked_at is not None or key.rotated_at is not None or key.is_expired:
        state = "revoked" if key.revoked_at else "already rotated" if key.rotated_at else "expired"
        raise ApiKeyStateConflict(f"API key {key.prefix} is {state} and cannot be rotated.")
    scopes = list(key.scopes.all())
    _require_held(actor, [p.code for p in scopes], field="scopes", what="scope(s)")
    now = timezone.now()
    grace_ends = now + timedelta(hours=settings.SYMPHONY_API_KEY_ROTATION_GRACE_HOURS)
    key.rotated_at = now  # first, so the replacement may take the same name
    key.save(update_fields=["rotated_at"])
    prefix, raw = keys.generate()
    new = ApiKey.objects.create(
        owner=key.owner,
        name=key.name,
        prefix=prefix,
        key_hash=keys.hash_key(raw),
        expires_at=key.expires_at,
        rate_limit=key.rate_limit,
    )
    new.scopes.set(scopes)
    key.rotated_to = new
    key.expires_at = min(grace_ends, key.expires_at) if key.expires_at else grace_ends
    key.save(update_fields=["rotated_to", "expires_at"])
    audit.record(
        "apikey.rotated",
        actor=actor,
        resource=new,
        api_key_prefix=key.prefix,
        details={
            "name": key.name,
            "owner": key.owner.get_username(),
            "old_prefix": key.prefix,
            "new_prefix": prefix,
            "old_expires_at": key.expires_at.isoformat(),
        },
    )
    _invalidate_on_commit()
    return new, raw


@transaction.atomic
def api_key_revoke(*, actor: Any, key: ApiKey) -> ApiKey:
    """Revoke ``key`` at once; the authentication cache forgets it when this commits.

    Raises ``ApiKeyStateConflict`` when it is already revoked and ``EscalationRefused`` when the
    actor may not manage it.
    """
    key = ApiKey.objects.select_for_update().select_related("owner").get(pk=key.pk)
    _require_key_manager(actor, key)
    if key.revoked_at is not None:
        raise ApiKeyStateConflict(f"API key {key.prefix} is already revoked.")
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit.record(
        "apikey.revoked",
        actor=actor,
        resource=key,
        api_key_prefix=key.prefix,
        details={"name": key.name, "owner": key.owner.get_username(), "prefix": key.prefix},
    )
    _invalidate_on_commit()
    return key
