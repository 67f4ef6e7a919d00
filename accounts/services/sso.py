"""Single sign-on logins: find or create the user, and re-sync their SSO role bindings.

Called by the SSO backend with claims it has already verified. Everything a login changes (a new
user, its identity link, profile fields, role bindings) commits together with its audit events,
or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from accounts.exceptions import LastSuperAdmin
from accounts.models import Project, Role, RoleBinding, SsoIdentity, User
from accounts.services.common import guard_super_admins, invalidate_on_commit, super_admin_ids
from accounts.services.grants import binding_label
from accounts.sso.provider import SsoFailure
from accounts.sso.rolemap import claim_groups, mapped, parse_role_map

log = structlog.get_logger(__name__)

_PROFILE_CLAIMS = {"email": "email", "first_name": "given_name", "last_name": "family_name"}


@dataclass
class SsoRoleSync:
    """What one sync changed: role names granted, revoked, kept (the last super admin) and skipped."""

    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@transaction.atomic
def sso_login(*, issuer: str, claims: dict[str, Any]) -> User:
    """The user for verified ``claims`` of ``issuer`` (created on first login), with their SSO role
    bindings replaced by what ``SYMPHONY_OIDC_ROLE_MAP`` gives their groups now. Records
    ``auth.sso.login`` and every role change. Raises ``SsoFailure`` (username_invalid,
    username_taken, user_inactive)."""
    subject = str(claims["sub"])
    identity = (
        SsoIdentity.objects.select_for_update().select_related("user").filter(issuer=issuer, subject=subject).first()
    )
    created = identity is None
    if identity is None:
        identity = SsoIdentity(user=_sso_user_create(issuer=issuer, claims=claims), issuer=issuer, subject=subject)
    user = identity.user
    if not user.is_active:
        raise SsoFailure("user_inactive", f"The account '{user.get_username()}' is deactivated in Symphony.")
    if not created:
        _sso_profile_update(user=user, claims=claims)
    groups = claim_groups(claims, settings.SYMPHONY_OIDC_ROLES_CLAIM)
    sync = sso_role_bindings_sync(user=user, groups=groups)
    identity.last_login_at = timezone.now()
    identity.save()
    audit.record(
        "auth.sso.login",
        actor=user,
        resource=user,
        action="login",
        details={
            "username": user.get_username(),
            "issuer": issuer,
            "subject": subject,
            "created": created,
            "groups": sorted(groups),
            "granted": sync.granted,
            "revoked": sync.revoked,
            "kept": sync.kept,
            "skipped": sync.skipped,
        },
    )
    return user


def sso_role_bindings_sync(*, user: User, groups: set[str]) -> SsoRoleSync:
    """Make ``user``'s SSO bindings exactly the bindings the map gives ``groups``: ``role`` binds
    globally, ``role@project`` in that project. Manual bindings are never touched, and nothing
    beyond the map is granted. An item naming a role that does not exist is skipped (its name listed
    under ``skipped`` in the login's audit event, and logged), so is one naming a project that does
    not exist (the whole ``group=role@project`` item listed). A revocation that would
    leave no active super admin is kept. Names in ``SsoRoleSync`` are ``role`` or ``role@project``.
    Call inside a transaction."""
    sync = SsoRoleSync()
    mappings = mapped(parse_role_map(settings.SYMPHONY_OIDC_ROLE_MAP), groups)
    roles = {role.name: role for role in Role.objects.filter(name__in={m.role for m in mappings})}
    projects = {p.slug: p for p in Project.objects.filter(slug__in={m.project for m in mappings if m.project})}
    resolved: dict[str, tuple[Role, Project | None]] = {}
    for mapping in mappings:
        if mapping.role not in roles:
            if mapping.role not in sync.skipped:
                log.warning("sso_mapped_role_unknown", role=mapping.role, username=user.get_username())
                sync.skipped.append(mapping.role)
        elif mapping.project is not None and mapping.project not in projects:
            log.warning("sso_mapped_project_unknown", mapping=str(mapping), username=user.get_username())
            sync.skipped.append(str(mapping))
        else:
            project = projects[mapping.project] if mapping.project else None
            resolved[binding_label(mapping.role, mapping.project)] = (roles[mapping.role], project)
    current = {
        binding_label(b.role.name, b.project.slug if b.project_id else None): b
        for b in user.role_bindings.filter(source=RoleBinding.Source.SSO).select_related("role", "project")
    }
    sync.granted = sorted(resolved.keys() - current.keys())
    RoleBinding.objects.bulk_create(
        [
            RoleBinding(user=user, role=resolved[label][0], project=resolved[label][1], source=RoleBinding.Source.SSO)
            for label in sync.granted
        ]
    )
    for label in sorted(current.keys() - resolved.keys()):
        if _revoke_unless_last_super_admin(current[label]):
            sync.revoked.append(label)
        else:
            log.warning("sso_revocation_kept_last_super_admin", role=label, username=user.get_username())
            sync.kept.append(label)
    for event, labels in (("authz.role.assigned", sync.granted), ("authz.role.revoked", sync.revoked)):
        for label in labels:
            name, _, slug = label.partition("@")
            details = {"user": user.get_username(), "role": name, "source": RoleBinding.Source.SSO.value}
            if slug:
                details["project"] = slug
            audit.record(event, actor=user, resource=user, project=slug or None, details=details)
    if sync.granted or sync.revoked:
        invalidate_on_commit()
    return sync


def _revoke_unless_last_super_admin(binding: RoleBinding) -> bool:
    before = super_admin_ids()
    try:
        with transaction.atomic():
            binding.delete()
            guard_super_admins(before, field="roles")
    except LastSuperAdmin:
        return False
    return True


def _sso_user_create(*, issuer: str, claims: dict[str, Any]) -> User:
    username = claims.get(settings.SYMPHONY_OIDC_USERNAME_CLAIM)
    if not isinstance(username, str) or not username:
        username = str(claims["sub"])
    username = User.normalize_username(username)
    try:
        UnicodeUsernameValidator()(username)
        if len(username) > User._meta.get_field("username").max_length:
            raise ValidationError("too long")
    except ValidationError:
        raise SsoFailure(
            "username_invalid", f"The identity provider's username {username[:150]!r} is not a valid Symphony username."
        ) from None
    if User.objects.filter(username__iexact=username).exists():
        # Never adopt an existing account by name: anyone able to pick that name at the provider
        # would take it over (a local superuser included).
        raise SsoFailure(
            "username_taken",
            f"A Symphony account named '{username}' exists and is not linked to this identity; an administrator "
            "must rename or remove it.",
        )
    user = User(username=username, is_staff=True)
    user.set_unusable_password()
    for attr, claim in _PROFILE_CLAIMS.items():
        value = claims.get(claim)
        if isinstance(value, str):
            setattr(user, attr, value[: User._meta.get_field(attr).max_length])
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # a concurrent first login took the name
        raise SsoFailure(
            "username_taken", f"A Symphony account named '{username}' was just created; try again."
        ) from None
    audit.record(
        "user.created",
        actor=user,
        resource=user,
        details={"username": username, "is_staff": True, "is_superuser": False, "source": "sso", "issuer": issuer},
    )
    return user


def _sso_profile_update(*, user: User, claims: dict[str, Any]) -> None:
    changed = []
    for attr, claim in _PROFILE_CLAIMS.items():
        value = claims.get(claim)
        if isinstance(value, str):
            value = value[: User._meta.get_field(attr).max_length]
            if getattr(user, attr) != value:
                setattr(user, attr, value)
                changed.append(attr)
    if changed:
        user.save(update_fields=changed)
