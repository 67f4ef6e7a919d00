"""Roles: create, update, delete (system roles protected, no cycles, no escalation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

import audit
from accounts import catalog
from accounts.backends import role_closure
from accounts.exceptions import SystemRoleProtected
from accounts.models import Permission, Role, User
from accounts.services.common import (
    SUPER_ADMIN,
    UNSET,
    guard_super_admins,
    invalidate_on_commit,
    lock_row,
    require_held,
    resolve_permissions,
    resolve_roles,
    role_effective_codes,
    save_fields,
    super_admin_ids,
)

# --- roles --------------------------------------------------------------------------------------


def _check_parents(role: Role | None, parents: list[Role]) -> None:
    if role is None or role.pk is None:
        return
    if any(parent.pk == role.pk for parent in parents):
        raise ValidationError({"parents": [f"Role '{role.name}' cannot inherit from itself."]})
    if role.pk in role_closure({p.pk for p in parents}):
        raise ValidationError({"parents": [f"Inheriting from these roles would create a cycle through '{role.name}'."]})


def _save_role(role: Role, *, update_fields: list[str] | None = None) -> None:
    """Validate and insert ``role``, or write only ``update_fields`` of an existing one (the caller
    bumps ``updated_at`` once at the end). Raises ``ValidationError`` (a taken name) and
    ``DeletedConcurrently``."""
    role.full_clean(exclude=["permissions", "parents"])
    try:
        with transaction.atomic():
            if update_fields is None:
                role.save()
            else:
                save_fields(role, update_fields)
    except IntegrityError:  # a concurrent create won the unique name between full_clean and save
        raise ValidationError({"name": ["A role with this name already exists."]}) from None


@transaction.atomic
def role_create(
    *,
    actor: User | None,
    name: str,
    description: str = "",
    permissions: Iterable[Permission | str] = (),
    parents: Iterable[Role | str] = (),
) -> Role:
    """Create a custom role. Raises ``ValidationError`` (name, permissions, parents) and
    ``EscalationRefused`` when the role would hold permissions the actor does not."""
    perms = resolve_permissions(permissions, field="permissions")
    parent_roles = resolve_roles(parents, field="parents")
    require_held(actor, [p.code for p in perms], field="permissions", what="permissions")
    require_held(actor, role_effective_codes(r.pk for r in parent_roles), field="parents", what="inherited permissions")
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
    invalidate_on_commit()
    return role


@transaction.atomic
def role_update(
    *,
    actor: User | None,
    role: Role,
    name: str = UNSET,
    description: str = UNSET,
    permissions: Iterable[Permission | str] = UNSET,
    parents: Iterable[Role | str] = UNSET,
) -> Role:
    """Change a role; only the given fields change. System roles keep their name, and super_admin
    keeps every permission. Raises ``ValidationError`` (unknown codes or names, cycles, duplicate
    name), ``SystemRoleProtected``, ``EscalationRefused`` and ``LastSuperAdmin``."""
    before_admins = super_admin_ids()
    role = lock_row(Role.objects.all(), role.pk)
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
        _save_role(role, update_fields=list(changes))

    if permissions is not UNSET:
        perms = resolve_permissions(permissions, field="permissions")
        codes = {p.code for p in perms}
        if role.name == SUPER_ADMIN and codes != set(catalog.ALL):
            raise SystemRoleProtected("The super_admin role always holds every permission.", field="permissions")
        require_held(actor, codes - old_perms, field="permissions", what="permissions")
        if codes != old_perms:
            role.permissions.set(perms)
            changes["permissions"] = {"added": sorted(codes - old_perms), "removed": sorted(old_perms - codes)}
    if parents is not UNSET:
        parent_roles = resolve_roles(parents, field="parents")
        _check_parents(role, parent_roles)
        names = {r.name for r in parent_roles}
        if names != old_parents:
            role.parents.set(parent_roles)
            changes["parents"] = {"added": sorted(names - old_parents), "removed": sorted(old_parents - names)}

    gained = role_effective_codes([role.pk]) - old_effective
    require_held(actor, gained, field="parents" if "parents" in changes else "permissions", what="permissions")
    if changes:
        save_fields(role, ["updated_at"])
        audit.record("role.updated", actor=actor, resource=role, details={"name": role.name, "changes": changes})
        guard_super_admins(before_admins, field="parents")
        invalidate_on_commit()
    return role


@transaction.atomic
def role_delete(*, actor: User | None, role: Role) -> None:
    """Delete a custom role. Raises ``SystemRoleProtected`` for a system role, ``EscalationRefused``
    when the actor does not hold what the role grants (deleting it would demote its holders), and
    ``LastSuperAdmin``."""
    if role.is_system:
        raise SystemRoleProtected(f"System role '{role.name}' cannot be deleted.", field="name")
    before_admins = super_admin_ids()
    require_held(actor, role_effective_codes([role.pk]), field="name", what="a role with permissions")
    details = {"name": role.name, "users": role.users.count()}
    role_id = role.pk
    role.delete()
    audit.record("role.deleted", actor=actor, resource_type="accounts.role", resource_id=role_id, details=details)
    guard_super_admins(before_admins, field="name")
    invalidate_on_commit()
