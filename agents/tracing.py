"""W3C Trace Context: the ``traceparent`` of a submission is kept with its task."""

from __future__ import annotations

import re

# version-traceid-parentid-flags; version ff is forbidden and all-zero ids are invalid (W3C §3.2.2).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[0-9a-f-]*)?$")


def clean_traceparent(value: str | None) -> str:
    """The header in its version-00 form when valid, else "" (an invalid header is ignored, not an error)."""
    match = _TRACEPARENT.match((value or "").strip().lower())
    if not match:
        return ""
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return ""
    return f"00-{trace_id}-{parent_id}-{flags}"
