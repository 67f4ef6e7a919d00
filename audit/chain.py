"""The hash chain: each event's hash covers its content and the previous event's hash.

``compute_hash`` works on a model instance or on a ``values()`` row (a dict), so verification and
purging can walk millions of rows without building ORM instances.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS_HASH = "0" * 64

# The fields covered by the hash, in a fixed order. Adding a field here breaks old chains: don't.
HASHED_FIELDS = (
    "occurred_at",
    "event_type",
    "severity",
    "outcome",
    "actor_id",
    "actor_name",
    "api_key_prefix",
    "ip_address",
    "user_agent",
    "resource_type",
    "resource_id",
    "action",
    "details",
    "request_id",
    "trace_id",
)

#: Fields added after the first chains were written. Each is hashed only when it is not empty, so an
#: event written before the field existed (empty there) keeps its hash, while a value set on a new
#: event, or set later on an old one, is covered like any other field.
OPTIONAL_HASHED_FIELDS = ("project",)

#: What a ``values()`` query must select to verify a row: the hashed fields plus the links.
CHAIN_VALUES = ("id", "prev_hash", "hash", *HASHED_FIELDS, *OPTIONAL_HASHED_FIELDS)


def _get(event: Any, field: str) -> Any:
    return event[field] if isinstance(event, Mapping) else getattr(event, field)


def canonical_content(event: Any) -> str:
    """The JSON text the hash covers: the hashed fields, keys sorted, times in ISO-8601 (µs)."""
    values: dict[str, Any] = {}
    for field in HASHED_FIELDS:
        value = _get(event, field)
        if field == "occurred_at":
            value = value.isoformat(timespec="microseconds")
        values[field] = value
    for field in OPTIONAL_HASHED_FIELDS:
        value = _get(event, field)
        if value:
            values[field] = value
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def compute_hash(event: Any, prev_hash: str) -> str:
    """SHA-256 over ``prev_hash`` and the event's canonical content (instance or ``values()`` dict)."""
    digest = hashlib.sha256()
    digest.update(prev_hash.encode())
    digest.update(b"\n")
    digest.update(canonical_content(event).encode())
    return digest.hexdigest()
