"""Receivers connected in ``AccountsConfig.ready()``.

- Django's auth signals become audit events (``auth.login``, ``auth.logout``, ``auth.failed``), so
  logins through the admin, the browsable API or anything calling ``django.contrib.auth.login`` are
  recorded the same way.
- A safety net for the permission cache: any write to the rows permissions are computed from drops
  the cache before it is made (refused with 503 when the shared cache cannot be reached, so nothing
  commits that cached entries would hide) and again when it commits, even one that bypassed the
  services (the shell, a data migration, a third-party admin action). The services invalidate
  explicitly as well. Creating a row needs no invalidation: nothing can be cached about it yet.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import signals as auth_signals
from django.db import transaction
from django.db.models import signals as model_signals

import audit
from accounts.backends import invalidate_permissions


def on_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit.record("auth.login", actor=user, resource=user, action="login", details={"username": user.get_username()})


def on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:  # logging out an anonymous session
        return
    audit.record("auth.logout", actor=user, resource=user, action="logout", details={"username": user.get_username()})


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # Django has already masked secrets in ``credentials``; keep only the username anyway.
    username = str(credentials.get("username", ""))[:150]
    audit.record("auth.failed", outcome="failure", action="login", details={"username": username, "method": "password"})


def _invalidate_on_commit(**kwargs: Any) -> None:
    transaction.on_commit(invalidate_permissions)


def _invalidate_before(**kwargs: Any) -> None:
    invalidate_permissions(strict=True)


def _only_login(update_fields: Any) -> bool:
    # A login only touches last_login: no reason to drop every cached permission set for it.
    return update_fields is not None and set(update_fields) <= {"last_login", "password"}


def _before_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if instance._state.adding or _only_login(update_fields):
        return
    invalidate_permissions(strict=True)


def _after_save(sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    if created:
        instance._symphony_created = True  # its first m2m rows need no invalidation either
        return
    if not _only_login(update_fields):
        _invalidate_on_commit()


def _m2m_changed(sender: Any, instance: Any, action: str, reverse: bool = False, **kwargs: Any) -> None:
    if not reverse and getattr(instance, "_symphony_created", False):
        return
    if action.startswith("pre_"):
        invalidate_permissions(strict=True)
    elif action.startswith("post_"):
        _invalidate_on_commit()


def connect() -> None:
    from accounts.models import ApiKey, Permission, Role, RoleBinding, User

    auth_signals.user_logged_in.connect(on_login, dispatch_uid="accounts.audit.login")
    auth_signals.user_logged_out.connect(on_logout, dispatch_uid="accounts.audit.logout")
    auth_signals.user_login_failed.connect(on_login_failed, dispatch_uid="accounts.audit.login_failed")

    # RoleBinding rows are also written directly (bulk_create sends no signal): the services invalidate
    # themselves and these receivers catch the other writes.
    for model in (User, Role, Permission, ApiKey, RoleBinding):
        uid = f"accounts.cache.{model.__name__}"
        if model is not Permission:  # the catalog's texts change on migrate; its codes never do
            model_signals.pre_save.connect(_before_save, sender=model, dispatch_uid=f"{uid}.pre_save")
            model_signals.post_save.connect(_after_save, sender=model, dispatch_uid=f"{uid}.post_save")
        model_signals.pre_delete.connect(_invalidate_before, sender=model, dispatch_uid=f"{uid}.pre_delete")
        model_signals.post_delete.connect(_invalidate_on_commit, sender=model, dispatch_uid=f"{uid}.post_delete")
    for through in (
        User.roles.through,
        User.extra_permissions.through,
        Role.permissions.through,
        Role.parents.through,
        ApiKey.scopes.through,
    ):
        model_signals.m2m_changed.connect(_m2m_changed, sender=through, dispatch_uid=f"accounts.cache.{through}")
