"""Writes on identity: API keys (roles and users are added by the accounts work)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from rest_framework import exceptions

import audit
from accounts import keys
from accounts.models import ApiKey, Permission


class EscalationRefused(exceptions.PermissionDenied):
    default_code = "escalation_refused"
    default_detail = "You cannot grant a permission you do not hold yourself."


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
    ``ValidationError`` ({"scopes": ...}) for unknown codes and ``EscalationRefused`` when ``actor``
    (default: the owner) does not hold every requested scope.
    """
    from accounts.backends import user_codes

    actor = actor or owner
    held = user_codes(actor)
    requested = set(scopes) if scopes is not None else set(user_codes(owner))
    found = {p.code: p for p in Permission.objects.filter(code__in=requested)}
    unknown = sorted(requested - found.keys())
    if unknown:
        raise exceptions.ValidationError({"scopes": [f"Unknown permission code(s): {', '.join(unknown)}."]})
    beyond = sorted(requested - held)
    if beyond:
        raise EscalationRefused(f"You cannot grant scope(s) you do not hold: {', '.join(beyond)}.")
    prefix, raw = keys.generate()
    key = ApiKey.objects.create(
        owner=owner, name=name, prefix=prefix, key_hash=keys.hash_key(raw), expires_at=expires_at, rate_limit=rate_limit
    )
    key.scopes.set(found.values())
    audit.record(
        "apikey.created",
        actor=actor,
        resource=key,
        details={"name": name, "owner": owner.get_username(), "prefix": prefix, "scopes": sorted(found)},
    )
    return key, raw
