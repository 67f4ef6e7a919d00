"""The hash chain: each event's hash covers its content and the previous event's hash."""

from __future__ import annotations

import hashlib
import json
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


def canonical_content(event: Any) -> str:
    values: dict[str, Any] = {}
    for field in HASHED_FIELDS:
        value = getattr(event, field)
        if field == "occurred_at":
            value = value.isoformat(timespec="microseconds")
        values[field] = value
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def compute_hash(event: Any, prev_hash: str) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode())
    digest.update(b"\n")
    digest.update(canonical_content(event).encode())
    return digest.hexdigest()
