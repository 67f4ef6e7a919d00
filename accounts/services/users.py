"""Users: create, update, set password, delete (never the last super admin)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables

import audit
from accounts import catalog
from accounts.exceptions import LastSuperAdmin
from accounts.models import Permission, Role, User
from accounts.services.common import (
    UNSET,
    guard_super_admins,
    invalidate_on_commit,
    lock_row,
    require_held,
    resolve_bindings,
    resolve_permissions,
    save_fields,
    super_admin_ids,
    user_require_manageable,
)
from accounts.services.grants import user_set_extra_permissions, user_set_roles

# --- users ----------------------------------------------------------------------------------------


def _require_superuser_grant(actor: User | None) -> None:
    require_held(actor, catalog.ALL, field="is_superuser", what="superuser status while missing permissions")


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
    """Validate and insert ``user``, or write only ``update_fields`` of an existing one. Raises
    ``ValidationError`` (a taken username) and ``DeletedConcurrently``."""
    user.full_clean(exclude=["password", "roles", "extra_permissions", "groups", "user_permissions"])
    try:
        with transaction.atomic():
            if update_fields is None:
                user.save()
            else:
                save_fields(user, update_fields)
    except IntegrityError:
        raise ValidationError({"username": ["A user with that username already exists."]}) from None


@sensitive_variables("password")
@transaction.atomic
def user_create(
    *,
    actor: User | None,
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
    role_objs = resolve_bindings(roles, field="roles")
    perm_objs = resolve_permissions(extra_permissions, field="extra_permissions")
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
    user_set_roles(actor=actor, user=user, roles=role_objs)
    user_set_extra_permissions(actor=actor, user=user, permissions=perm_objs)
    invalidate_on_commit()
    return user


@sensitive_variables("password")
@transaction.atomic
def user_update(
    *,
    actor: User | None,
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
    before_admins = super_admin_ids()
    user = lock_row(User.objects.all(), user.pk)
    user_require_manageable(actor=actor, user=user)
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
        _save_user(user, update_fields=list(changed))
    if roles is not UNSET:
        user_set_roles(actor=actor, user=user, roles=resolve_bindings(roles, field="roles"))
    if extra_permissions is not UNSET:
        user_set_extra_permissions(
            actor=actor, user=user, permissions=resolve_permissions(extra_permissions, field="extra_permissions")
        )
    if changed:
        audit.record(
            "user.updated", actor=actor, resource=user, details={"username": user.username, "changes": changed}
        )
    field = "is_active" if "is_active" in changed else "is_superuser" if "is_superuser" in changed else "roles"
    guard_super_admins(before_admins, field=field)
    invalidate_on_commit()
    return user


@sensitive_variables("password")
def user_set_password(*, actor: User | None, user: User, password: str) -> User:
    """Set a new password (the admin's password page). Raises ``ValidationError`` (password) and
    ``EscalationRefused`` when ``user`` outranks the actor."""
    return user_update(actor=actor, user=user, password=password)


@transaction.atomic
def user_delete(*, actor: User | None, user: User) -> None:
    """Delete a user (their API keys go with them). Raises ``EscalationRefused`` when the user
    outranks the actor and ``LastSuperAdmin`` for the last active super admin."""
    before_admins = super_admin_ids()
    user_require_manageable(actor=actor, user=user)
    if before_admins and not before_admins - {user.pk}:
        raise LastSuperAdmin("The last active super admin cannot be deleted.", field="username")
    user_id, username = user.pk, user.get_username()
    user.delete()
    audit.record(
        "user.deleted", actor=actor, resource_type="accounts.user", resource_id=user_id, details={"username": username}
    )
    guard_super_admins(before_admins, field="username")
    invalidate_on_commit()
