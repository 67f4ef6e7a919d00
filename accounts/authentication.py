"""DRF authentication with API keys: ``Authorization: Bearer sym_...`` or ``X-API-Key: sym_...``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

import audit
from accounts import keys
from accounts.backends import (
    GENERATION_KEY,
    permissions_generation,
    user_codes,
    user_project_codes,
    user_role_names,
)
from accounts.models import ApiKey

log = structlog.get_logger(__name__)

#: last_used_at is written at most this often per key.
TOUCH_INTERVAL = timedelta(seconds=60)


class ApiKeyAuthFailed(exceptions.AuthenticationFailed):
    """A presented API key was rejected; ``default_code`` says why (never which part was wrong)."""


def api_key_cache_key(prefix: str) -> str:
    """Cache entry of a resolved key: ``(generation, key)``. The permission generation it was loaded
    under is stored inside the entry and compared on read, so every change that invalidates
    permissions (revocation, rotation, the owner's roles or status) also drops it."""
    return f"rbac:apikey:{prefix}"


#: Per process: when this process last recorded each key's use (by prefix). It spares the shared
#: cache's "touched" marker a round trip on every request (issue 7); the marker and the conditional
#: UPDATE still keep the write to at most once a minute across processes.
_last_touched: dict[str, datetime] = {}


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate with an API key.

    Returns ``None`` for requests without one of our headers (so session auth may try), and raises
    ``AuthenticationFailed`` (401 with ``WWW-Authenticate``) for a malformed, unknown, expired or
    revoked key, or one whose owner is inactive. Each rejection is audited (``auth.failed``, or
    ``apikey.expired_used`` for an expired or rotated-out key) with the IP and the key prefix only.
    A resolved key (with its owner and scopes) is cached, so a warm request makes no query.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw = self.get_raw_key(request)
        if raw is None:
            return None
        key = self.resolve(raw)
        user = key.owner
        user._api_key_scopes = frozenset(key.scopes_codes)
        user._api_key_project_id = key.project_id
        self.touch(key)
        return user, key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'

    @staticmethod
    def get_raw_key(request: Request) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            return value.strip()
        api_key = request.META.get("HTTP_X_API_KEY")
        return api_key.strip() if api_key is not None else None

    @classmethod
    def resolve(cls, raw: str) -> ApiKey:
        prefix = keys.parse_prefix(raw)
        if prefix is None:
            raise _reject("api_key_malformed", "Malformed API key.", prefix="")
        key = cls.lookup(prefix)
        if key is None or not keys.matches(raw, key.key_hash):
            raise _reject("api_key_invalid", "Invalid API key.", prefix=prefix)
        if key.revoked_at is not None:
            raise _reject("api_key_revoked", "This API key has been revoked.", prefix=prefix, owner=key.owner)
        if key.is_expired:
            raise _reject(
                "api_key_expired",
                "This API key has been rotated and its grace period is over."
                if key.rotated_to_id
                else "This API key has expired.",
                prefix=prefix,
                owner=key.owner,
                event="apikey.expired_used",
                details={"rotated": key.rotated_to_id is not None},
            )
        if not key.owner.is_active:
            raise _reject("api_key_owner_inactive", "The owner of this API key is inactive.", prefix=prefix)
        return key

    @staticmethod
    def lookup(prefix: str) -> ApiKey | None:
        """The key with this prefix, its owner and ``scopes_codes`` loaded, from the cache when warm.

        A warm lookup is one cache round trip: the generation counter and the entry are read together
        (``get_many``), and the entry counts only if it was stored under the current generation. So a
        revocation (which bumps the generation) still takes effect on the very next request.
        """
        cache_key = api_key_cache_key(prefix)
        found = cache.get_many([GENERATION_KEY, cache_key])
        generation = found.get(GENERATION_KEY)
        if generation is None:
            generation = permissions_generation()  # first use, or evicted: start (or read) a generation
        entry = found.get(cache_key)
        if entry is not None and entry[0] == generation:
            return entry[1]
        key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
        if key is None:
            return None
        key.scopes_codes = sorted(key.scopes.values_list("code", flat=True))
        # Memoised on the owner and pickled with the key: a warm request then needs no further
        # cache round trip for permissions or roles (same generation, so just as fresh).
        user_codes(key.owner)
        user_project_codes(key.owner)
        user_role_names(key.owner)
        # Stored under the generation read *before* the row was loaded: if a change bumped it
        # meanwhile, the next request sees a newer generation and loads the key again.
        cache.set(cache_key, (generation, key), timeout=settings.SYMPHONY_PERMISSION_CACHE_SECONDS)
        return key

    @staticmethod
    def touch(key: ApiKey) -> None:
        """Record last use at most once a minute, so hot keys do not write on every request.

        This process remembers its own last write (no round trip at all within the minute); past it,
        the shared cache's marker makes one process of the fleet write, and the UPDATE is conditional.
        """
        now = timezone.now()
        last = _last_touched.get(key.prefix)
        if last is not None and last <= now < last + TOUCH_INTERVAL:
            return
        if len(_last_touched) > 10_000:  # a long-lived worker seeing many keys: forget the old ones
            _last_touched.clear()
        _last_touched[key.prefix] = now
        if not cache.add(f"rbac:apikey-touched:{key.pk}", 1, timeout=int(TOUCH_INTERVAL.total_seconds())):
            return
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - TOUCH_INTERVAL)
        ).update(last_used_at=now)
        key.last_used_at = now


def _reject(
    code: str,
    message: str,
    *,
    prefix: str,
    owner: Any = None,
    event: str = "auth.failed",
    details: dict[str, Any] | None = None,
) -> ApiKeyAuthFailed:
    """Audit and log a rejected key (prefix only, never the secret) and build the 401.

    Requests are not atomic (no ATOMIC_REQUESTS), so the event commits although the request fails.
    """
    log.warning("api_key_rejected", reason=code, key_prefix=prefix)
    audit.record(
        event,
        actor=owner,
        outcome="failure",
        api_key_prefix=prefix,
        action="api_key_auth",
        details={"reason": code, "prefix": prefix, **(details or {})},
    )
    exc = ApiKeyAuthFailed(message, code=code)
    exc.default_code = code
    return exc
