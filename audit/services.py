"""Writing to the audit trail."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, compute_hash
from audit.events import EVENT_TYPES
from audit.models import AuditEvent
from observability import context, metrics

# Any constant works: it names the one advisory lock that serialises appends to the chain.
_CHAIN_LOCK_ID = 0x53594D41  # "SYMA"
_MAX_DETAILS_BYTES = 64 * 1024


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
    ``resource_id``. Raises ``UnknownEventType`` for a type not in the catalog.
    """
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(event_type)
    request = context.get_current_request()
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        actor = user if getattr(user, "is_authenticated", False) else None
    if api_key_prefix is None and request is not None:
        api_key_prefix = getattr(getattr(request, "auth", None), "prefix", None)
    if resource is not None:
        resource_type = resource_type or resource._meta.label_lower
        resource_id = resource_id or resource.pk

    event = AuditEvent(
        occurred_at=timezone.now(),
        event_type=event_type,
        severity=severity or EVENT_TYPES[event_type],
        outcome=outcome,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=(getattr(actor, "get_username", lambda: "")() or "")[:150] if actor else "",
        api_key_prefix=api_key_prefix or "",
        ip_address=ip_address or (context.client_ip(request) if request is not None else None),
        user_agent=(request.headers.get("User-Agent", "")[:512] if request is not None else ""),
        resource_type=str(resource_type)[:64],
        resource_id=str(resource_id)[:64],
        action=action[:64],
        details=_jsonable(details or {}),
        request_id=context.get_request_id() or "",
        trace_id=_current_trace_id(),
    )
    with transaction.atomic():
        _lock_chain()
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event.prev_hash = last or GENESIS_HASH
        event.hash = compute_hash(event, event.prev_hash)
        event.save(force_insert=True)
    metrics.AUDIT_EVENTS.labels(event_type=event.event_type, severity=event.severity).inc()
    return event


def _lock_chain() -> None:
    """Serialise appends so each event links to the one committed before it.

    On PostgreSQL a transaction-scoped advisory lock is held until the caller's transaction ends, so
    the event read as "last" is always the last committed one. SQLite runs with
    ``transaction_mode=IMMEDIATE``, where every write transaction already holds the database lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so the hashed content equals what the database gives back."""
    text = json.dumps(details, default=str, sort_keys=True)
    if len(text) > _MAX_DETAILS_BYTES:
        return {"truncated": True, "size": len(text)}
    return json.loads(text)


def _current_trace_id() -> str:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry is a hard dependency
        return ""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""
