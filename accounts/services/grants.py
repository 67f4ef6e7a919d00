"""Users' grants: roles and extra permissions, granted and revoked one at a time."""

from __future__ import annotations

from django.db import transaction

import audit
from accounts.exceptions import EscalationRefused
from accounts.models import Permission, Project, Role, RoleBinding, User
from accounts.services.common import (
    guard_super_admins,
    held_codes_in,
    invalidate_on_commit,
    require_held,
    resolve_permissions,
    resolve_roles,
    role_effective_codes,
    super_admin_ids,
    user_require_manageable,
)

# --- user grants ----------------------------------------------------------------------------------


#: A role binding as the services take it: a role (global) or a role in a project.
Grant = Role | tuple[Role, Project | None]


def _pair(grant: Grant) -> tuple[Role, Project | None]:
    return grant if isinstance(grant, tuple) else (grant, None)


def binding_label(role_name: str, project_slug: str | None) -> str:
    """``role`` for a global binding, ``role@project`` for one in a project (the API's spelling)."""
    return f"{role_name}@{project_slug}" if project_slug else role_name


def user_manual_roles(user: User) -> list[tuple[Role, Project | None]]:
    """The (role, project) pairs ``user`` holds through manual bindings (those synced from single
    sign-on excluded); project None is a global binding."""
    bindings = RoleBinding.objects.filter(user=user, source=RoleBinding.Source.MANUAL).select_related("role", "project")
    return [(b.role, b.project) for b in bindings]


def user_set_roles(*, actor: User | None, user: User, roles: list[Grant], only_global: bool = False) -> None:
    """Make ``roles`` (roles, or (role, project) pairs) exactly the manual bindings of ``user``,
    auditing each one assigned or revoked; with ``only_global``, project bindings are left alone.

    A building block of the services below and of ``user_create``/``user_update``: it runs inside
    their transaction and leaves the cache invalidation and the super-admin guard to them. Bindings
    synced from single sign-on belong to the sync (services/sso.py) and are left alone; rows are
    written directly because ``user.roles.add()`` skips a role already held through SSO. Raises
    ``EscalationRefused`` (roles) when an added binding grants what ``actor`` does not hold where
    it applies: a role in a project needs its permissions held in that project (or globally).
    """
    current = {(r.pk, getattr(p, "pk", None)): (r, p) for r, p in user_manual_roles(user)}
    if only_global:
        current = {k: v for k, v in current.items() if k[1] is None}
    wanted = {(r.pk, getattr(p, "pk", None)): (r, p) for r, p in map(_pair, roles)}
    added = [wanted[k] for k in wanted.keys() - current.keys()]
    removed = [current[k] for k in current.keys() - wanted.keys()]
    by_project: dict[Project | None, list[Role]] = {}
    for role, project in added:
        by_project.setdefault(project, []).append(role)
    for project, project_roles in by_project.items():
        beyond = sorted(role_effective_codes(r.pk for r in project_roles) - held_codes_in(actor, project))
        if beyond:
            where = "" if project is None else f" in project '{project.slug}'"
            raise EscalationRefused(
                f"You cannot grant{where} roles with permissions you do not hold there: {', '.join(beyond)}.",
                field="roles",
            )
    if added:
        RoleBinding.objects.bulk_create([RoleBinding(user=user, role=role, project=project) for role, project in added])
    for role, project in removed:
        RoleBinding.objects.filter(user=user, role=role, project=project, source=RoleBinding.Source.MANUAL).delete()
    for event, changes in (("authz.role.assigned", added), ("authz.role.revoked", removed)):
        for role, project in sorted(changes, key=lambda rp: binding_label(rp[0].name, getattr(rp[1], "slug", None))):
            details = _grant(user, role=role.name)
            if project is not None:
                details["project"] = project.slug
            audit.record(event, actor=actor, resource=user, project=getattr(project, "slug", None), details=details)


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
def role_grant(*, actor: User | None, user: User, role: Role | str, project: Project | None = None) -> User:
    """Give ``user`` a role, globally or in ``project``. Raises ``ValidationError`` (roles) and
    ``EscalationRefused``."""
    (resolved,) = resolve_roles([role], field="roles")
    user_require_manageable(actor=actor, user=user)
    user_set_roles(actor=actor, user=user, roles=[*user_manual_roles(user), (resolved, project)])
    invalidate_on_commit()
    return user


@transaction.atomic
def role_revoke(*, actor: User | None, user: User, role: Role | str, project: Project | None = None) -> User:
    """Take a role from ``user`` (the global binding, or the one in ``project``). Raises
    ``ValidationError`` (roles), ``EscalationRefused`` and ``LastSuperAdmin``."""
    (resolved,) = resolve_roles([role], field="roles")
    before_admins = super_admin_ids()
    user_require_manageable(actor=actor, user=user)
    pid = getattr(project, "pk", None)
    kept = [(r, p) for r, p in user_manual_roles(user) if (r.pk, getattr(p, "pk", None)) != (resolved.pk, pid)]
    user_set_roles(actor=actor, user=user, roles=kept)
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
