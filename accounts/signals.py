"""Receivers connected in ``AccountsConfig.ready()``.

- Django's auth signals become audit events (``auth.login``, ``auth.logout``, ``auth.failed``), so
  logins through the admin, the browsable API or anything calling ``django.contrib.auth.login`` are
  recorded the same way.
- A safety net for the permission cache: any write to the rows permissions are computed from drops
  the cache when it commits, even one that bypassed the services (the shell, a data migration, a
  third-party admin action). The services invalidate explicitly as well.
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


def _user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    # A login only touches last_login: no reason to drop every cached permission set for it.
    if update_fields is not None and set(update_fields) <= {"last_login", "password"}:
        return
    _invalidate_on_commit()


def connect() -> None:
    from accounts.models import ApiKey, Permission, Role, RoleBinding, User

    auth_signals.user_logged_in.connect(on_login, dispatch_uid="accounts.audit.login")
    auth_signals.user_logged_out.connect(on_logout, dispatch_uid="accounts.audit.logout")
    auth_signals.user_login_failed.connect(on_login_failed, dispatch_uid="accounts.audit.login_failed")

    model_signals.post_save.connect(_user_saved, sender=User, dispatch_uid="accounts.cache.user_saved")
    # RoleBinding rows are also written directly; bulk_create sends no signal, so the services
    # invalidate themselves and these receivers catch the other writes.
    for model in (User, Role, Permission, ApiKey, RoleBinding):
        model_signals.post_delete.connect(_invalidate_on_commit, sender=model, dispatch_uid=f"accounts.cache.{model}")
    for model in (Role, ApiKey, RoleBinding):
        model_signals.post_save.connect(_invalidate_on_commit, sender=model, dispatch_uid=f"accounts.cache.s.{model}")
    for through in (
        User.roles.through,
        User.extra_permissions.through,
        Role.permissions.through,
        Role.parents.through,
        ApiKey.scopes.through,
    ):
        model_signals.m2m_changed.connect(
            _invalidate_on_commit, sender=through, dispatch_uid=f"accounts.cache.{through}"
        )
