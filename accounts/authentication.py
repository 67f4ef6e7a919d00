"""DRF authentication with API keys: ``Authorization: Bearer sym_...`` or ``X-API-Key: sym_...``."""

from __future__ import annotations

import copy
import pickle
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.contrib import auth
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.utils.module_loading import import_string
from rest_framework import authentication, exceptions
from rest_framework.request import Request

import audit
from accounts import backends, keys
from accounts.backends import (
    GENERATION_KEY,
    cache_add,
    cache_get_many,
    cache_set,
    permissions_generation,
    user_codes,
    user_project_codes,
    user_project_role_names,
    user_role_names,
)
from accounts.models import ApiKey, User
from ratelimit.limiter import KeyCaller

log = structlog.get_logger(__name__)

#: last_used_at is written at most this often per key.
TOUCH_INTERVAL = timedelta(seconds=60)

#: Compared against a presented key whose prefix is unknown, so that path does the same hashing and
#: constant-time comparison as a known prefix with a wrong secret (no key has this hash).
_NO_KEY_HASH = keys.hash_key(keys.generate()[1])


class ApiKeyAuthFailed(exceptions.AuthenticationFailed):
    """A presented API key was rejected; ``default_code`` says why (never which part was wrong)."""


def api_key_cache_key(prefix: str) -> str:
    """Cache entry of a looked-up prefix: ``(generation, key)``. The permission generation it was
    loaded under is stored inside the entry and compared on read, so every change that invalidates
    permissions (revocation, rotation, the owner's roles or status) also drops it."""
    return f"rbac:apikey:{prefix}"


def _unknown_prefix(prefix: str) -> ApiKey:
    """What an unknown prefix is cached as: an unsaved key shaped like a real entry (owner included),
    so storing, reading and unpickling it cost what a known key's entry costs."""
    return ApiKey(prefix=prefix, key_hash=_NO_KEY_HASH, name="", owner=User(username=""))


#: Per process: when this process last recorded each key's use (by prefix). It spares the shared
#: cache's "touched" marker a round trip on every request; the marker and the conditional
#: UPDATE still keep the write to at most once a minute across processes.
_last_touched: dict[str, datetime] = {}

#: Where a request's key check is remembered, so the rate limiter and DRF look the key up once.
_CHECKED = "_symphony_api_key_check"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate with an API key.

    Returns ``None`` for requests without one of our headers (so session auth may try), and raises
    ``AuthenticationFailed`` (401 with ``WWW-Authenticate``) for a malformed, unknown, expired or
    revoked key, or one whose owner is inactive. Each rejection is audited (``auth.failed``, or
    ``apikey.expired_used`` for an expired or rotated-out key) with the IP and the key prefix only.
    A looked-up key (with its owner and scopes) is cached, so a warm request makes no query; an
    unknown prefix is cached the same way and costs the same.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw = self.get_raw_key(request)
        if raw is None:
            return None
        key, reason = self.check(raw, request._request)
        if reason is not None:
            raise _reject(reason, raw, key)
        user = key.owner
        user._api_key_scopes = frozenset(key.scopes_codes)
        user._api_key_project_id = key.project_id
        self.touch(key)
        return user, key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'

    @staticmethod
    def get_raw_key(request: Request | HttpRequest) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            return value.strip()
        api_key = request.META.get("HTTP_X_API_KEY")
        return api_key.strip() if api_key is not None else None

    @classmethod
    def check(cls, raw: str, request: HttpRequest | None = None) -> tuple[ApiKey | None, str | None]:
        """``(key, None)`` for a usable key, else ``(key or None, rejection code)``. Neither audits nor
        raises; remembered on ``request`` (the rate limiter checks first, DRF then reuses it)."""
        memo = getattr(request, _CHECKED, None)
        if memo is not None and memo[0] == raw:
            return memo[1], memo[2]
        key, reason = cls._check(raw)
        if request is not None:
            setattr(request, _CHECKED, (raw, key, reason))
        return key, reason

    @classmethod
    def _check(cls, raw: str) -> tuple[ApiKey | None, str | None]:
        prefix = keys.parse_prefix(raw)
        if prefix is None:
            return None, "api_key_malformed"
        key = cls.lookup(prefix)
        # The same work for an unknown prefix as for a known one: hash and compare in constant time.
        if not keys.matches(raw, key.key_hash) or key.pk is None:
            return None, "api_key_invalid"
        if key.revoked_at is not None:
            return key, "api_key_revoked"
        if key.is_expired:
            return key, "api_key_expired"
        if not key.owner.is_active:
            return key, "api_key_owner_inactive"
        if not hasattr(key, "scopes_codes"):  # an entry cached by a request with a wrong secret
            cls._complete(key)
        return key, None

    @staticmethod
    def lookup(prefix: str) -> ApiKey:
        """The key with this prefix (its owner loaded), or an unsaved stand-in (``pk`` None) when no
        key has it; from the cache when warm.

        A warm lookup is one cache round trip: the generation counter and the entry are read together
        (``get_many``), and the entry counts only if it was stored under the current generation. So a
        revocation (which bumps the generation) still takes effect on the very next request. When
        the cache is unreachable, the key comes from the database on every request.
        """
        cache_key = api_key_cache_key(prefix)
        found = cache_get_many([cache_key])
        if found is None:  # the cache is unreachable
            generation = entry = None
        else:
            generation, entry = found.get(GENERATION_KEY), found.get(cache_key)
            if generation is None:  # first use, or evicted: start (or read) a generation
                generation = permissions_generation()
        if entry is not None and entry[0] == generation:
            return entry[1]
        key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first() or _unknown_prefix(prefix)
        if generation is not None:
            # Stored under the generation read *before* the row was loaded: if a change bumped it
            # meanwhile, the next request sees a newer generation and loads the key again.
            key._cache_generation = generation
            cache_set(cache_key, (generation, key))
        return key

    @staticmethod
    def _complete(key: ApiKey) -> None:
        """Load what a usable key needs (scopes, the owner's permissions and roles) and cache it
        with the key: a warm request then needs no further cache round trip or query."""
        key.scopes_codes = sorted(key.scopes.values_list("code", flat=True))
        user_codes(key.owner)
        user_project_codes(key.owner)
        user_role_names(key.owner)
        user_project_role_names(key.owner)
        generation = getattr(key, "_cache_generation", None)
        if generation is not None:
            cache_set(api_key_cache_key(key.prefix), (generation, key))

    @staticmethod
    def touch(key: ApiKey) -> None:
        """Record last use at most once a minute, so hot keys do not write on every request.

        This process remembers its own last write (no round trip at all within the minute); past it,
        the shared cache's marker makes one process of the fleet write, and the UPDATE is conditional
        (so without the cache each process still writes at most once a minute).
        """
        now = timezone.now()
        last = _last_touched.get(key.prefix)
        if last is not None and last <= now < last + TOUCH_INTERVAL:
            return
        if len(_last_touched) > 10_000:  # a long-lived worker seeing many keys: forget the old ones
            _last_touched.clear()
        _last_touched[key.prefix] = now
        if cache_add(f"rbac:apikey-touched:{key.pk}", 1, int(TOUCH_INTERVAL.total_seconds())) is False:
            return
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - TOUCH_INTERVAL)
        ).update(last_used_at=now)
        key.last_used_at = now


def rate_limit_caller(request: HttpRequest) -> KeyCaller | None:
    """The rate limiter's view of a request's API key (registered in ``AccountsConfig.ready()``):
    ``None`` without a key header, the key's id and own limit when it is usable, else no id.

    A key this process accepted before comes back remembered (``KeyCaller.confirm``): the limiter
    reads the permission generation in the round trip that counts the request, and the memory holds
    only if the key was accepted under that very generation, as the shared cache's entry would.
    """
    raw = ApiKeyAuthentication.get_raw_key(request)
    if not raw:
        return None
    remember = _can_remember(request)
    digest = keys.hash_key(raw) if remember else ""
    if remember and (remembered := _accepted.get(digest)) is not None:
        if remembered.until > time.monotonic():
            return _remembered_caller(request, raw, digest, remembered)
        _accepted.pop(digest, None)
    key, reason = ApiKeyAuthentication.check(raw, request)
    if reason is not None or key is None:
        return KeyCaller(key_id=None)
    caller = KeyCaller(key_id=key.pk, rate=key.rate_limit)
    generation = getattr(key, "_cache_generation", None)
    if remember and generation is not None:
        if len(_accepted) > 10_000:  # a long-lived worker seeing many keys: forget the old ones
            _accepted.clear()
        until = time.monotonic() + settings.SYMPHONY_PERMISSION_CACHE_SECONDS
        _accepted[digest] = _Accepted(generation, caller, pickle.dumps(key, pickle.HIGHEST_PROTOCOL), until)
    return caller


@dataclass(frozen=True)
class _Accepted:
    """A key this process accepted: under which generation, as which caller, the key itself (pickled:
    each request gets its own copy), and until when (the shared cache's entry lives as long)."""

    generation: int
    caller: KeyCaller
    key: bytes
    until: float


#: Per process, by the SHA-256 of the presented key (what the database stores): keys accepted here.
_accepted: dict[str, _Accepted] = {}


def _can_remember(request: HttpRequest) -> bool:
    # The generation must come from the cache that counts the request, and a process that lost the
    # cache trusts nothing from before until it has bumped the generation (accounts.backends).
    return (
        settings.RATELIMIT_USE_CACHE == "default"
        and not backends._lost_cache
        and getattr(request, _CHECKED, None) is None
    )


def _remembered_caller(request: HttpRequest, raw: str, digest: str, remembered: _Accepted) -> KeyCaller:
    def confirm(generation: Any) -> bool:
        if generation == remembered.generation and not backends._lost_cache:
            key = pickle.loads(remembered.key)  # noqa: S301 - pickled by this process
            if not key.is_expired:  # expiry comes with time, not with a change that bumps the generation
                setattr(request, _CHECKED, (raw, key, None))
                return True
        _accepted.pop(digest, None)
        return False

    return replace(remembered.caller, confirm=(GENERATION_KEY, confirm))


def as_if_new(request: HttpRequest) -> HttpRequest:
    """A copy of ``request`` whose credentials are checked again, as a new request's would be.

    For a request held open (a claim waiting for work, a stream), to ask whether its caller may still
    do what it began: its key may have been revoked, its owner deactivated, its session ended since
    it came in. The key check remembered on the request is left behind, and the session and its user
    are read again from the session store (so a logout, or a password change, counts).
    """
    fresh = copy.copy(request)
    fresh.__dict__.pop(_CHECKED, None)
    fresh.__dict__.pop("_cached_user", None)
    session = getattr(request, "session", None)
    if session is not None:
        store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
        fresh.session = store(session.session_key)
        fresh.user = SimpleLazyObject(lambda: auth.get_user(fresh))
    return fresh


_MESSAGES = {
    "api_key_malformed": "Malformed API key.",
    "api_key_invalid": "Invalid API key.",
    "api_key_revoked": "This API key has been revoked.",
    "api_key_owner_inactive": "The owner of this API key is inactive.",
}


def _reject(code: str, raw: str, key: ApiKey | None) -> ApiKeyAuthFailed:
    """Audit and log a rejected key (prefix only, never the secret) and build the 401.

    Requests are not atomic (no ATOMIC_REQUESTS), so the event commits although the request fails.
    """
    prefix = keys.parse_prefix(raw) or ""
    event, details, owner = "auth.failed", {}, None
    if code == "api_key_expired":
        rotated = key.rotated_to_id is not None
        message = (
            "This API key has been rotated and its grace period is over." if rotated else "This API key has expired."
        )
        event, details, owner = "apikey.expired_used", {"rotated": rotated}, key.owner
    else:
        message = _MESSAGES[code]
        if code == "api_key_revoked":
            owner = key.owner
    log.warning("api_key_rejected", reason=code, key_prefix=prefix)
    audit.record(
        event,
        actor=owner,
        outcome="failure",
        api_key_prefix=prefix,
        action="api_key_auth",
        details={"reason": code, "prefix": prefix, **details},
    )
    exc = ApiKeyAuthFailed(message, code=code)
    exc.default_code = code
    return exc
