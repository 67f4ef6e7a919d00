"""API keys: create (shown once), rotate (with a grace period), revoke.

Through an API key (``acting_key``), a key never manages a key broader than itself: the target's
scopes must be within what the acting key may do (its scopes ∩ its owner's permissions), and the
target may not allow more requests per second than the acting key. A key with no permissions at
all (every agent-bound key) manages no keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

import audit
from accounts import keys
from accounts.backends import user_codes
from accounts.exceptions import ApiKeyStateConflict, EscalationRefused
from accounts.models import ApiKey, User
from accounts.services.common import (
    held_codes,
    held_codes_anywhere,
    invalidate_on_commit,
    lock_row,
    require_held,
    resolve_permissions,
    save_fields,
    user_require_manageable,
)
from ratelimit.rates import parse_rate

# --- a key managing keys --------------------------------------------------------------------------


def rate_per_second(rate_limit: str) -> Fraction:
    """Requests per second a key's ``rate_limit`` allows; "" (no limit of its own) is the API's default
    limit, ``SYMPHONY_RATELIMIT_DEFAULT``. Presets and ``100/15m`` are read by the rate limiter's own
    grammar, so this compares what the limiter enforces. Raises ``ValueError`` for a rate it rejects."""
    rate = parse_rate(rate_limit or settings.SYMPHONY_RATELIMIT_DEFAULT)
    return Fraction(rate.limit, rate.period)


def _describe_rate(rate_limit: str) -> str:
    """``100/m (1.667 requests/s)``, or ``the default limit moderate (0.556 requests/s)`` for ""."""
    what = rate_limit or f"the default limit {settings.SYMPHONY_RATELIMIT_DEFAULT}"
    per_second = f"{float(rate_per_second(rate_limit)):.3f}".rstrip("0").rstrip(".")
    return f"{what} ({per_second} requests/s)"


def key_codes(key: ApiKey) -> set[str]:
    """The catalog codes ``key`` is scoped to (as loaded by authentication, else from the database)."""
    codes = getattr(key, "scopes_codes", None)
    return set(codes) if codes is not None else set(key.scopes.values_list("code", flat=True))


def require_key_covers(
    *, actor: User | None, acting_key: ApiKey | None, scopes: Iterable[str], rate_limit: str, verb: str
) -> None:
    """Refuse (``EscalationRefused``) managing, through ``acting_key``, a key with ``scopes`` and
    ``rate_limit`` broader than the acting key: a scope beyond the acting key's scopes ∩ ``actor``'s
    permissions (field ``scopes``), or a higher rate in requests per second (field ``rate_limit``).
    A key with no permissions at all, such as an agent-bound key, manages no keys. ``verb`` names
    the action in the message ("create", "rotate", "revoke"). Nothing to check without a key."""
    if acting_key is None or actor is None:
        return
    allowed = key_codes(acting_key) & user_codes(actor)
    if not allowed:
        raise EscalationRefused(
            f"API key {acting_key.prefix} holds no permissions (agent-bound keys hold none): it cannot {verb} "
            "API keys. Use a key with scopes, or the admin."
        )
    beyond = sorted(set(scopes) - allowed)
    if beyond:
        raise EscalationRefused(
            f"API key {acting_key.prefix} cannot {verb} a key broader than itself: its scopes do not cover "
            f"{', '.join(beyond)}.",
            field="scopes",
        )
    if rate_per_second(rate_limit) > rate_per_second(acting_key.rate_limit):
        raise EscalationRefused(
            f"API key {acting_key.prefix} is limited to {_describe_rate(acting_key.rate_limit)}: it cannot "
            f"{verb} a key allowed more: {_describe_rate(rate_limit)}.",
            field="rate_limit",
        )


# --- API keys -------------------------------------------------------------------------------------


def _require_key_manager(actor: User | None, key: ApiKey) -> None:
    """Owners manage their own keys; others need user:update and must outrank the owner."""
    if actor is None or actor.pk == key.owner_id:
        return
    if "user:update" not in held_codes(actor):
        raise EscalationRefused("Only the owner, or a user with user:update, may manage this API key.")
    user_require_manageable(actor=actor, user=key.owner)


def _save_key(**fields: Any) -> ApiKey:
    try:
        with transaction.atomic():
            return ApiKey.objects.create(**fields)
    except IntegrityError:
        raise ValidationError({"name": ["This owner already has an active API key with this name."]}) from None


def _require_owner_manageable(actor: User, owner: User) -> None:
    """A key for someone else acts as them: only for user:update holders who outrank them."""
    if actor.pk == owner.pk:
        return
    if "user:update" not in held_codes(actor):
        raise EscalationRefused("Creating a key for another user needs user:update.", field="owner")
    try:
        user_require_manageable(actor=actor, user=owner)
    except EscalationRefused as exc:
        raise EscalationRefused(str(exc.detail), field="owner") from None


def _validate_fields(*, name: str, rate_limit: str, expires_at: datetime | None) -> str:
    """Check the fields; return the rate limit in its counted form (``moderate`` -> ``500/15m``)."""
    from accounts.validators import normalize_rate_limit, validate_rate_limit

    if not name or len(name) > ApiKey._meta.get_field("name").max_length:
        raise ValidationError({"name": ["A name of 1 to 100 characters is required."]})
    try:
        validate_rate_limit(rate_limit)
    except ValidationError as exc:
        raise ValidationError({"rate_limit": exc.messages}) from None
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["Expiry must be in the future."]})
    return normalize_rate_limit(rate_limit)


@sensitive_variables("raw")
@transaction.atomic
def api_key_create(
    *,
    owner: User,
    name: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit: str | None = None,
    actor: User | None = None,
    acting_key: ApiKey | None = None,
    project: Any = None,
) -> tuple[ApiKey, str]:
    """Create an API key for ``owner``; return ``(key, raw_key)``. The raw key exists only here.

    ``project`` (a ``Project``) restricts the key to that project; a key made through an
    ``acting_key`` restricted to a project is restricted to it too.

    ``scopes`` are catalog codes; None means every permission the owner holds (through
    ``acting_key``, the key the request came with: only those the acting key may use).
    ``rate_limit`` None means the API's default limit (through a key: the acting key's own limit);
    "" is always the default. Raises ``ValidationError`` (name, scopes, rate_limit, expires_at) for
    bad input and ``EscalationRefused`` when ``actor`` (default: the owner) does not hold every
    requested scope, creates a key for someone else without user:update, or when the new key would
    be broader than ``acting_key`` (``require_key_covers``).
    """
    actor = actor or owner
    if scopes is None:
        scopes = sorted(held_codes_anywhere(owner) if acting_key is None else user_codes(owner))
        if acting_key is not None:
            scopes = sorted(set(scopes) & key_codes(acting_key))
    if rate_limit is None:
        rate_limit = acting_key.rate_limit if acting_key is not None else ""
    found = {p.code: p for p in resolve_permissions(scopes, field="scopes")}
    rate_limit = _validate_fields(name=name, rate_limit=rate_limit, expires_at=expires_at)
    require_key_covers(actor=actor, acting_key=acting_key, scopes=found, rate_limit=rate_limit, verb="create")
    require_held(actor, found, field="scopes", what="scope(s)", anywhere=True)
    _require_owner_manageable(actor, owner)
    if acting_key is not None and acting_key.project_id is not None:
        if project is not None and project.pk != acting_key.project_id:
            raise EscalationRefused(
                "A key restricted to a project can only create keys for that project.", field="project"
            )
        project = acting_key.project
    prefix, raw = keys.generate()
    key = _save_key(
        owner=owner,
        name=name,
        prefix=prefix,
        key_hash=keys.hash_key(raw),
        expires_at=expires_at,
        rate_limit=rate_limit,
        project=project,
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
def api_key_rotate(*, actor: User | None, key: ApiKey, acting_key: ApiKey | None = None) -> tuple[ApiKey, str]:
    """Replace ``key`` with a new one (same owner, name, scopes, rate limit and expiry); return
    ``(new_key, raw_key)``. The old key keeps working for SYMPHONY_API_KEY_ROTATION_GRACE_HOURS.

    Raises ``ApiKeyStateConflict`` for a revoked, expired or already rotated key, and
    ``EscalationRefused`` when the actor may not manage it, lacks one of its scopes, or acts through
    an ``acting_key`` narrower than it (the replacement would be broader than the acting key).
    """
    key = lock_row(ApiKey.objects.select_related("owner"), key.pk)
    _require_key_manager(actor, key)
    require_key_covers(
        actor=actor, acting_key=acting_key, scopes=key_codes(key), rate_limit=key.rate_limit, verb="rotate"
    )
    if key.revoked_at is not None or key.rotated_at is not None or key.is_expired:
        state = "revoked" if key.revoked_at else "already rotated" if key.rotated_at else "expired"
        raise ApiKeyStateConflict(f"API key {key.prefix} is {state} and cannot be rotated.")
    scopes = list(key.scopes.all())
    require_held(actor, [p.code for p in scopes], field="scopes", what="scope(s)")
    now = timezone.now()
    grace_ends = now + timedelta(hours=settings.SYMPHONY_API_KEY_ROTATION_GRACE_HOURS)
    key.rotated_at = now  # first, so the replacement may take the same name
    save_fields(key, ["rotated_at"])
    prefix, raw = keys.generate()
    new = ApiKey.objects.create(
        owner=key.owner,
        name=key.name,
        prefix=prefix,
        key_hash=keys.hash_key(raw),
        expires_at=key.expires_at,
        rate_limit=key.rate_limit,
        project_id=key.project_id,
    )
    new.scopes.set(scopes)
    key.rotated_to = new
    key.expires_at = min(grace_ends, key.expires_at) if key.expires_at else grace_ends
    save_fields(key, ["rotated_to", "expires_at"])
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
    invalidate_on_commit()
    return new, raw


@transaction.atomic
def api_key_revoke(*, actor: User | None, key: ApiKey, acting_key: ApiKey | None = None) -> ApiKey:
    """Revoke ``key`` at once; the authentication cache forgets it when this commits.

    Raises ``ApiKeyStateConflict`` when it is already revoked and ``EscalationRefused`` when the
    actor may not manage it, or acts through an ``acting_key`` narrower than it (a key scoped to
    agent:read may not revoke its owner's full key).
    """
    key = lock_row(ApiKey.objects.select_related("owner"), key.pk)
    _require_key_manager(actor, key)
    require_key_covers(
        actor=actor, acting_key=acting_key, scopes=key_codes(key), rate_limit=key.rate_limit, verb="revoke"
    )
    if key.revoked_at is not None:
        raise ApiKeyStateConflict(f"API key {key.prefix} is already revoked.")
    key.revoked_at = timezone.now()
    save_fields(key, ["revoked_at"])
    audit.record(
        "apikey.revoked",
        actor=actor,
        resource=key,
        api_key_prefix=key.prefix,
        details={"name": key.name, "owner": key.owner.get_username(), "prefix": key.prefix},
    )
    invalidate_on_commit()
    return key
