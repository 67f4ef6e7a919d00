"""API keys: create (shown once), rotate (with a grace period), revoke."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

import audit
from accounts import keys
from accounts.backends import user_codes
from accounts.exceptions import (
    ApiKeyStateConflict,
    EscalationRefused,
)
from accounts.models import ApiKey
from accounts.services.common import _invalidate_on_commit, _permissions, _require_held, _require_outranks, held_codes

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
    from accounts.validators import normalize_rate_limit, validate_rate_limit

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
    rate_limit = normalize_rate_limit(rate_limit)
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
