"""Users' grants: roles and extra permissions, granted and revoked one at a time."""

from __future__ import annotations

from typing import Any

from django.db import transaction

import audit
from accounts.models import Permission, Role, RoleBinding, User
from accounts.services.common import (
    _guard_super_admins,
    _invalidate_on_commit,
    _permissions,
    _require_held,
    _require_outranks,
    _roles,
    _super_admin_ids,
    role_effective_codes,
)

# --- user grants ----------------------------------------------------------------------------------


def _manual_roles(user: User) -> list[Role]:
    return list(Role.objects.filter(bindings__user=user, bindings__source=RoleBinding.Source.MANUAL))


def _set_roles(*, actor: Any, user: User, roles: list[Role]) -> None:
    # Only manual bindings: those synced from single sign-on belong to the sync (services/sso.py).
    # Rows are written directly because ``user.roles.add()`` skips a role already held through SSO.
    current = {r.pk: r for r in _manual_roles(user)}
    wanted = {r.pk: r for r in roles}
    added = [wanted[pk] for pk in wanted.keys() - current.keys()]
    removed = [current[pk] for pk in current.keys() - wanted.keys()]
    _require_held(actor, role_effective_codes(r.pk for r in added), field="roles", what="roles with permissions")
    if added:
        RoleBinding.objects.bulk_create([RoleBinding(user=user, role=role) for role in added])
    if removed:
        RoleBinding.objects.filter(user=user, role__in=removed, source=RoleBinding.Source.MANUAL).delete()
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
    _set_roles(actor=actor, user=user, roles=[*_manual_roles(user), resolved])
    _invalidate_on_commit()
    return user


@transaction.atomic
def role_revoke(*, actor: Any, user: User, role: Role | str) -> User:
    """Take a role from ``user``. Raises ``ValidationError`` (roles), ``EscalationRefused`` and
    ``LastSuperAdmin``."""
    (resolved,) = _roles([role], field="roles")
    before_admins = _super_admin_ids()
    _require_outranks(actor, user)
    _set_roles(actor=actor, user=user, roles=[r for r in _manual_roles(user) if r.pk != resolved.pk])
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
