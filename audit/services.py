"""Writing to the audit trail: ``record()`` (the one way in) and ``audit_purge()`` (retention)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from typing import Any

import structlog
from django.db import connection, models, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, compute_hash
from audit.events import EVENT_TYPES, SEVERITIES
from audit.export import FORMATS
from audit.models import AuditEvent
from audit.verification import ChainBroken, verify_chain
from observability import context

log = structlog.get_logger(__name__)

# Any constant works: it names the one advisory lock that serialises appends to the chain.
_CHAIN_LOCK_ID = 0x53594D41  # "SYMA"
_MAX_DETAILS_BYTES = 64 * 1024
_OUTCOMES = frozenset(AuditEvent.Outcome.values)


class UnknownEventType(ValueError):
    """Raised by ``record()`` for an event type missing from ``audit.events.EVENT_TYPES``."""


def record(
    event_type: str,
    *,
    actor: Any = None,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    severity: str | None = None,
    resource: models.Model | None = None,
    resource_type: str = "",
    resource_id: str | int = "",
    action: str = "",
    details: dict[str, Any] | None = None,
    api_key_prefix: str | None = None,
    ip_address: str | None = None,
) -> AuditEvent:
    """Append an event to the audit trail, inside the caller's transaction.

    A rolled-back change therefore leaves no event, and a committed change always has one. Request
    id, IP, user agent, actor and API-key prefix are filled from the current request when there is
    one and they were not given. ``resource`` (a model instance) fills ``resource_type`` and
    ``resource_id``. Raises ``UnknownEventType`` for a type not in the catalog and ``ValueError``
    for an unknown outcome or severity.

    On PostgreSQL the append takes a transaction-scoped advisory lock that is held until the
    caller's transaction ends: call ``record()`` as the last write of a transaction so that lock
    is held briefly (see docs/audit.md, "Concurrency").
    """
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(event_type)
    severity = severity or EVENT_TYPES[event_type]
    if severity not in SEVERITIES:
        raise ValueError(f"unknown audit severity {severity!r}")
    if outcome not in _OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    request = context.get_current_request()
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        actor = user if getattr(user, "is_authenticated", False) else None
    if api_key_prefix is None and request is not None:
        api_key_prefix = getattr(getattr(request, "auth", None), "prefix", None)
    if ip_address is None and request is not None:
        ip_address = context.client_ip(request)
    if resource is not None:
        resource_type = resource_type or resource._meta.label_lower
        resource_id = resource_id or resource.pk

    event = AuditEvent(
        occurred_at=timezone.now(),
        event_type=event_type,
        severity=severity,
        outcome=outcome,
        actor_id=getattr(actor, "pk", None),
        actor_name=_text(actor.get_username() if actor is not None else "", 150),
        api_key_prefix=_text(api_key_prefix, 32),
        ip_address=_normalise_ip(ip_address),
        user_agent=_text(request.headers.get("User-Agent", "") if request is not None else "", 512),
        resource_type=_text(resource_type, 64),
        resource_id=_text(resource_id, 64),
        action=_text(action, 64),
        details=_jsonable(details or {}),
        request_id=_text(context.get_request_id(), 128),
        trace_id=_current_trace_id(),
    )
    with transaction.atomic():
        _append(event)
    return event


def _append(event: AuditEvent) -> None:
    """Link ``event`` to the last committed event and insert it (the caller holds a transaction)."""
    _lock_chain()
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    event.prev_hash = last or GENESIS_HASH
    event.hash = compute_hash(event, event.prev_hash)
    event.save(force_insert=True)


def _lock_chain() -> None:
    """Serialise appends so each event links to the one committed before it.

    On PostgreSQL a transaction-scoped advisory lock is held until the caller's transaction ends, so
    the event read as "last" is always the last committed one (READ COMMITTED: the SELECT after the
    lock sees every commit made before it), and ids, drawn after the lock, follow the chain order.
    SQLite runs with ``transaction_mode=IMMEDIATE``, where every write transaction already holds
    the database lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])


@transaction.atomic
def audit_purge(*, before: dt.datetime, actor: Any = None) -> int:
    """Delete the oldest events, up to the first one that occurred at or after ``before``.

    Only a prefix of the chain is ever removed, so what remains is one unbroken chain. The purge
    verifies the part it removes first and refuses (``ChainBroken``) to destroy a broken one, then
    records an ``audit.purged`` event whose details keep the hash of the last purged event: the
    anchor ``audit_verify`` accepts as the new head's ``prev_hash``. Returns the number deleted.
    """
    _lock_chain()
    first_kept = AuditEvent.objects.filter(occurred_at__gte=before).order_by("id").values_list("id", flat=True).first()
    doomed = AuditEvent.objects.all() if first_kept is None else AuditEvent.objects.filter(id__lt=first_kept)
    last_purged = doomed.order_by("-id").values("id", "hash").first()
    if last_purged is None:
        return 0
    result = verify_chain(stop_after_id=first_kept or last_purged["id"])
    if not result.ok:
        raise ChainBroken(result)
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The trigger of migration 0002 lets DELETE through only with this transaction-local flag.
            cursor.execute("SET LOCAL symphony.audit_purge = 'on'")
        cursor.execute(f"DELETE FROM {table} WHERE id <= %s", [last_purged["id"]])  # noqa: S608 - quoted name
        count = cursor.rowcount
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL symphony.audit_purge = 'off'")
    record(
        "audit.purged",
        actor=actor,
        details={
            "count": count,
            "before": before.isoformat(),
            "last_purged_id": last_purged["id"],
            "last_purged_hash": last_purged["hash"],
        },
    )
    log.info("audit_purged", count=count, before=before.isoformat(), last_purged_id=last_purged["id"])
    return count


@transaction.atomic
def audit_export_start(
    *, queryset: models.QuerySet, fmt: str, filters: dict[str, Any], via: str, actor: Any = None
) -> tuple[models.QuerySet, int]:
    """Fix what an export will contain, count it, and record ``audit.exported``; return both.

    The export streams after this returns, so the event is recorded first, with an exact count:
    the queryset is bounded by the highest id that exists now, so events appended while it streams
    (this ``audit.exported`` one included) are not part of it. An export whose download is then
    cut short is still recorded: the data may have left. Raises ``ValueError`` for an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unsupported export format {fmt!r}")
    upper = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    bounded = queryset.filter(id__lte=upper)
    count = bounded.count()
    record(
        "audit.exported",
        actor=actor,
        details={"format": fmt, "filters": filters, "rows": count, "via": via, "upper_id": upper},
    )
    return bounded, count


def _text(value: Any, limit: int) -> str:
    """A string for a text column: NUL removed (PostgreSQL refuses it), cut to the column's length."""
    return str(value or "").replace("\x00", "")[:limit]


def _normalise_ip(value: str | None) -> str | None:
    """The canonical text of an IP (PostgreSQL's inet gives it back that way, and the hash covers it).

    Something that is not an IP is dropped rather than failing the audited action.
    """
    if not value:
        return None
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so the hashed content equals what the database gives back.

    NUL characters are removed (PostgreSQL's jsonb refuses ``\\u0000``); oversized details are
    replaced by a marker rather than failing the audited action.
    """
    text = json.dumps(details, default=str, sort_keys=True)
    if len(text) > _MAX_DETAILS_BYTES:
        return {"truncated": True, "size": len(text)}
    return _strip_nul(json.loads(text))


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(key): _strip_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strip_nul(item) for item in value]
    return value


def _current_trace_id() -> str:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry is a hard dependency
        return ""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""
