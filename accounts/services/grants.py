"""Users' grants: roles and extra permissions, granted and revoked one at a time."""

from __future__ import annotations

from django.db import transaction

import audit
from accounts.models import Permission, Role, RoleBinding, User
from accounts.services.common import (
    guard_super_admins,
    invalidate_on_commit,
    require_held,
    resolve_permissions,
    resolve_roles,
    role_effective_codes,
    super_admin_ids,
    user_require_manageable,
)

# --- user grants ----------------------------------------------------------------------------------


def user_manual_roles(user: User) -> list[Role]:
    """The roles ``user`` holds through manual bindings (those synced from single sign-on excluded)."""
    return list(Role.objects.filter(bindings__user=user, bindings__source=RoleBinding.Source.MANUAL))


def user_set_roles(*, actor: User | None, user: User, roles: list[Role]) -> None:
    """Make ``roles`` exactly the roles ``user`` holds through manual bindings, auditing each one
    assigned or revoked.

    A building block of the services below and of ``user_create``/``user_update``: it runs inside
    their transaction and leaves the cache invalidation and the super-admin guard to them. Bindings
    synced from single sign-on belong to the sync (services/sso.py) and are left alone; rows are
    written directly because ``user.roles.add()`` skips a role already held through SSO. Raises
    ``EscalationRefused`` (roles) when an added role grants what ``actor`` does not hold.
    """
    current = {r.pk: r for r in user_manual_roles(user)}
    wanted = {r.pk: r for r in roles}
    added = [wanted[pk] for pk in wanted.keys() - current.keys()]
    removed = [current[pk] for pk in current.keys() - wanted.keys()]
    require_held(actor, role_effective_codes(r.pk for r in added), field="roles", what="roles with permissions")
    if added:
        RoleBinding.objects.bulk_create([RoleBinding(user=user, role=role) for role in added])
    if removed:
        RoleBinding.objects.filter(user=user, role__in=removed, source=RoleBinding.Source.MANUAL).delete()
    for role in sorted(added, key=lambda r: r.name):
        audit.record("authz.role.assigned", actor=actor, resource=user, details=_grant(user, role=role.name))
    for role in sorted(removed, key=lambda r: r.name):
        audit.record("authz.role.revoked", actor=actor, resource=user, details=_grant(user, role=role.name))


def user_set_extra_permissions(*, actor: User | None, user: User, permissions: list[Permission]) -> None:
    """Make ``permissions`` exactly the extra permissions ``user`` holds, auditing each change.

    Runs inside the caller's transaction, like ``user_set_roles``. Raises ``EscalationRefused``
    (extra_permissions) when an added permission is one ``actor`` does not hold.
    """
    current = {p.code: p for p in user.extra_permissions.all()}
    wanted = {p.code: p for p in permissions}
    added = sorted(wanted.keys() - current.keys())
    removed = sorted(current.keys() - wanted.keys())
    require_held(actor, added, field="extra_permissions", what="permissions")
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
def role_grant(*, actor: User | None, user: User, role: Role | str) -> User:
    """Give ``user`` a role. Raises ``ValidationError`` (roles) and ``EscalationRefused``."""
    (resolved,) = resolve_roles([role], field="roles")
    user_require_manageable(actor=actor, user=user)
    user_set_roles(actor=actor, user=user, roles=[*user_manual_roles(user), resolved])
    invalidate_on_commit()
    return user


@transaction.atomic
def role_revoke(*, actor: User | None, user: User, role: Role | str) -> User:
    """Take a role from ``user``. Raises ``ValidationError`` (roles), ``EscalationRefused`` and
    ``LastSuperAdmin``."""
    (resolved,) = resolve_roles([role], field="roles")
    before_admins = super_admin_ids()
    user_require_manageable(actor=actor, user=user)
    user_set_roles(actor=actor, user=user, roles=[r for r in user_manual_roles(user) if r.pk != resolved.pk])
    guard_super_admins(before_admins, field="roles")
    invalidate_on_commit()
    return user


@transaction.atomic
def permission_grant(*, actor: User | None, user: User, permission: Permission | str) -> User:
    """Give ``user`` an extra permission. Raises ``ValidationError`` and ``EscalationRefused``."""
    (resolved,) = resolve_permissions([permission], field="extra_permissions")
    user_require_manageable(actor=actor, user=user)
    user_set_extra_permissions(actor=actor, user=user, permissions=[*user.extra_permissions.all(), resolved])
    invalidate_on_commit()
    return user


@transaction.atomic
def permission_revoke(*, actor: User | None, user: User, permission: Permission | str) -> User:
    """Take an extra permission from ``user``. Raises ``ValidationError`` and ``EscalationRefused``."""
    (resolved,) = resolve_permissions([permission], field="extra_permissions")
    user_require_manageable(actor=actor, user=user)
    remaining = [p for p in user.extra_permissions.all() if p.pk != resolved.pk]
    user_set_extra_permissions(actor=actor, user=user, permissions=remaining)
    invalidate_on_commit()
    return user
