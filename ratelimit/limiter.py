"""The limiter: django-ratelimit's fixed windows over the shared cache, and who is counted.

Who is counted (the *scope*): the API key when a valid one is presented (with its own ``rate_limit`` when
it has one), the user for session requests, and the client IP (trusted-proxy aware) otherwise. Which
limit applies: ``SYMPHONY_RATELIMIT_DEFAULT`` for the whole API, except URL names or router basenames
listed in ``SYMPHONY_RATELIMIT_OVERRIDES``, which get their own counter and rate. See docs/security.md.

The counters are django-ratelimit's: same window arithmetic (a fixed window per key, its edge jittered by
a hash of the key) and the same cache keys, so ``django_ratelimit.core.get_usage`` reads them. Only the
cache calls differ: our backends count in one call (``incr_window``: a Redis script, a SQLite UPSERT)
that also reads the entry confirming a remembered API key, so a warm request is one round trip; on
other caches ``INCR`` first and ``ADD`` when the window's counter does not exist yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django.urls import Resolver404, resolve
from django_ratelimit import ALL
from django_ratelimit import core as rl_core

from observability import context, metrics
from observability.registry import DEGRADED, HEALTHY, UNHEALTHY, HealthResult
from ratelimit.rates import Rate, parse_rate

log = structlog.get_logger(__name__)

SCOPE_API_KEY, SCOPE_USER, SCOPE_IP, SCOPE_LOGIN = "api_key", "user", "ip", "login"
DEFAULT_GROUP = "api"
_KEY_GROUP = "api-key-own"


class RateLimiterUnavailable(Exception):
    """The cache that holds the counters could not be reached."""


@dataclass(frozen=True)
class Usage:
    """One counted request: ``count`` in the current window of ``limit``, which ends in ``reset`` seconds."""

    group: str
    scope: str
    value: str
    count: int
    limit: int
    reset: int
    cache_key: str

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def hit(*, group: str, rate: Rate, scope: str, value: str) -> Usage:
    """Count one request for ``value`` in ``group`` and return the usage.

    Raises ``RateLimiterUnavailable`` when the cache fails (Redis down or timing out).
    """
    return _hit(group, rate, scope, value)[0]


def _hit(group: str, rate: Rate, scope: str, value: str, read: tuple[str, ...] = ()) -> tuple[Usage, dict[str, Any]]:
    """``hit``, also reading the cache entries ``read`` in the same round trip where the cache can
    (``incr_window``: ``symphony.caches``' backends); ``({name: value}`` of those found)."""
    window = rl_core._get_window(value, rate.period)
    cache_key = rl_core._make_cache_key(group, window, rate.text, value, ALL)
    cache = caches[settings.RATELIMIT_USE_CACHE]
    timeout = rate.period + rl_core.EXPIRATION_FUDGE
    try:
        incr_window = getattr(cache, "incr_window", None)
        if incr_window is not None:
            count, found = incr_window(cache_key, timeout, read)
        else:
            try:
                count = cache.incr(cache_key)
            except ValueError:  # no counter yet in this window (or it just expired)
                added = cache.add(cache_key, 1, timeout)
                count = 1 if added else cache.incr(cache_key)
            found = cache.get_many(read) if read else {}
    except ValueError as exc:
        raise RateLimiterUnavailable("the rate-limit counter vanished twice") from exc
    except Exception as exc:
        raise RateLimiterUnavailable(f"{type(exc).__name__}: {exc}") from exc
    # django-ratelimit's window still includes its end second: the next one starts a second later.
    reset = max(1, window - int(time.time()) + 1)
    return Usage(group, scope, value, int(count), rate.limit, reset, cache_key), found


# --- Who is counted ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyCaller:
    """What the key resolver says of a request's API key: its id when the key is accepted (``None``
    otherwise: the request is counted against its address), and the key's own rate limit or ``""``.

    A caller the resolver remembers from an earlier request rather than checked now comes with
    ``confirm``: the cache entry to read in the counting round trip, and a function of its value that
    says whether the memory still holds. When it does not, the resolver is asked again and checks.
    """

    key_id: int | None
    rate: str = ""
    confirm: tuple[str, Callable[[Any], bool]] | None = field(default=None, compare=False)


#: ``request -> KeyCaller``, or ``None`` when the request carries no API key (registered by accounts).
KeyResolver = Callable[[HttpRequest], KeyCaller | None]
_key_resolver: KeyResolver | None = None


def register_key_resolver(resolver: KeyResolver) -> None:
    """Tell the limiter how to recognise API keys (``accounts`` does, from its ``ready()``)."""
    global _key_resolver
    _key_resolver = resolver


def _address(request: HttpRequest) -> str:
    return f"ip:{context.client_ip(request) or 'unknown'}"


def _scope(request: HttpRequest, caller: KeyCaller | None) -> tuple[str, str, Rate | None]:
    """``(scope, value, own rate or None)``: the API key, else the session user, else the client IP."""
    if caller is not None:
        if caller.key_id is None:  # an unknown, bad or revoked key is counted against its sender
            return SCOPE_IP, _address(request), None
        own = None
        if caller.rate:
            try:
                own = parse_rate(caller.rate)
            except ValueError:  # written before the grammar was enforced: the endpoint's limit applies
                log.warning("api_key_rate_limit_invalid", key_id=caller.key_id, rate_limit=caller.rate)
        return SCOPE_API_KEY, f"key:{caller.key_id}", own
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return SCOPE_USER, f"user:{user.pk}", None
    return SCOPE_IP, _address(request), None


def endpoint_rule(request: HttpRequest) -> tuple[str, Rate]:
    """``(group, rate)`` for the request's endpoint: an override by URL name or basename, else the default.

    An override key matches the URL name exactly (``agent-claim``) or as a router basename, i.e. the URL
    name minus its last ``-<suffix>`` (``audit-event`` matches ``audit-event-list`` and ``-detail``).
    """
    overrides: dict[str, str] = settings.SYMPHONY_RATELIMIT_OVERRIDES
    if overrides:
        try:
            name = resolve(request.path_info).url_name or ""
        except Resolver404:
            name = ""
        candidates = [name]
        while "-" in candidates[-1]:
            candidates.append(candidates[-1].rsplit("-", 1)[0])
        for candidate in candidates:
            if candidate and candidate in overrides:
                return f"api:{candidate}", parse_rate(overrides[candidate])
    return DEFAULT_GROUP, parse_rate(settings.SYMPHONY_RATELIMIT_DEFAULT)


def check_api_request(request: HttpRequest) -> Usage:
    """Count an API request against its scope and endpoint. Raises ``RateLimiterUnavailable``."""
    cache = caches[settings.RATELIMIT_USE_CACHE]
    if getattr(cache, "is_failing", lambda: False)():
        # Known down (symphony.caches.RedisCache's breaker): no counter to find, so spare the key
        # lookup that identifying the caller would cost (from the database, during an outage).
        raise RateLimiterUnavailable("the rate-limit cache is unreachable")
    caller = _key_resolver(request) if _key_resolver is not None else None
    if caller is None or caller.confirm is None:
        return _count_request(request, caller)[0]
    # A remembered key: count it and read what confirms the memory in one round trip.
    name, confirm = caller.confirm
    usage, found = _count_request(request, caller, read=(name,))
    if confirm(found.get(name)):
        return usage
    checked = _key_resolver(request)  # the memory is stale (say, a revocation): the key is checked now
    if checked is not None and (checked.key_id, checked.rate) == (caller.key_id, caller.rate):
        return usage
    return _count_request(request, checked)[0]  # counted now as what it turned out to be (the other count stands)


def _count_request(
    request: HttpRequest, caller: KeyCaller | None, read: tuple[str, ...] = ()
) -> tuple[Usage, dict[str, Any]]:
    scope, value, own_rate = _scope(request, caller)
    if own_rate is not None:
        # A key's own limit replaces the presets across the whole API (one counter per key).
        group, rate = _KEY_GROUP, own_rate
    else:
        group, rate = endpoint_rule(request)
    return _hit(group, rate, scope, value, read)


def check_login_attempt(request: HttpRequest, username: str) -> Usage | None:
    """Count a login attempt per client IP and per username; the usage that is exceeded, else None.

    Raises ``RateLimiterUnavailable``.
    """
    ip_usage = hit(
        group="login-ip",
        rate=parse_rate(settings.SYMPHONY_RATELIMIT_LOGIN_PER_IP),
        scope=SCOPE_LOGIN,
        value=_address(request),
    )
    if ip_usage.exceeded:
        return ip_usage
    if username:
        user_usage = hit(
            group="login-username",
            rate=parse_rate(settings.SYMPHONY_RATELIMIT_LOGIN_PER_USERNAME),
            scope=SCOPE_LOGIN,
            value=f"username:{username.strip().lower()[:150]}",
        )
        if user_usage.exceeded:
            return user_usage
    return None


# --- What a rejection leaves behind -----------------------------------------------------------------


def record_rejection(request: HttpRequest, usage: Usage) -> None:
    """Count a rejection in metrics and audit it at most once per counter and window.

    The dedup marker lives as long as the window, so a flood leaves one audit event, not thousands.
    Cache failures here are logged, never raised: the 429 stands either way.
    """
    metrics.RATE_LIMIT_REJECTIONS.labels(scope=usage.scope).inc()  # one of the four SCOPE_* values
    try:
        first = caches[settings.RATELIMIT_USE_CACHE].add(f"{usage.cache_key}:audited", 1, usage.reset + 5)
    except Exception:  # noqa: BLE001 - a lost audit dedup marker must not turn a 429 into a 500
        log.warning("rate_limit_audit_dedup_failed", group=usage.group)
        first = True
    log.warning("rate_limit_exceeded", group=usage.group, scope=usage.scope, limit=usage.limit)
    if not first:
        return
    import audit

    audit.record(
        "security.rate_limit.exceeded",
        outcome="denied",
        action=request.method[:64],
        details={
            "group": usage.group,
            "scope": usage.scope,
            "limit": usage.limit,
            "window_reset_seconds": usage.reset,
            "path": request.path[:512],
        },
    )


# --- When the cache is down -------------------------------------------------------------------------

_last_warning = 0.0

#: Told ``(cache alias, error)`` whenever the counters' cache fails (accounts registers one: by default
#: that cache also holds the permission cache, and a process that saw it fail must not trust what it
#: holds again unchecked, even if failing closed kept every request away from the permission cache).
OutageListener = Callable[[str, Exception], None]
_outage_listener: OutageListener | None = None


def register_outage_listener(listener: OutageListener) -> None:
    """Tell ``listener`` of every failure of the counters' cache (``accounts`` does, from its ``ready()``)."""
    global _outage_listener
    _outage_listener = listener


def note_unavailable(exc: Exception) -> None:
    """The limiter could not count: tell the outage listener, and log it at most once every 10 seconds
    per process."""
    if _outage_listener is not None:
        _outage_listener(settings.RATELIMIT_USE_CACHE, exc)
    global _last_warning
    now = time.time()
    if now - _last_warning >= 10:
        _last_warning = now
        mode = "open" if settings.SYMPHONY_RATELIMIT_FAIL_OPEN else "closed"
        log.warning("rate_limiter_unavailable", failing=mode, error=str(exc)[:200])


def health_check() -> HealthResult:
    """``ratelimit`` in ``/health``: degraded when the counters' cache fails and we fail open (requests
    are served unlimited), unhealthy when we fail closed (API requests get 503)."""
    if not settings.RATELIMIT_ENABLE:
        return HealthResult(HEALTHY, "rate limiting is disabled")
    try:
        caches[settings.RATELIMIT_USE_CACHE].get("ratelimit:health")
    except Exception as exc:  # noqa: BLE001 - any failure means the limiter cannot count
        fail_open = settings.SYMPHONY_RATELIMIT_FAIL_OPEN
        status, verb = (DEGRADED, "serving unlimited") if fail_open else (UNHEALTHY, "refusing API requests")
        return HealthResult(status, f"rate-limit cache unreachable, {verb}", {"error": type(exc).__name__})
    return HealthResult(HEALTHY, "ok", {"cache": settings.RATELIMIT_USE_CACHE})
