"""W3C Trace Context: the ``traceparent`` of a submission is kept with its task.

Symphony opens a ``symphony.task.submit`` span around a submission and stores *its* traceparent
with the task (the caller's, when tracing is off). Claims, completions and failures then open spans
in that same trace, and the worker continues it for the agent's work, so one trace shows
submission, claim, the agent's work and completion.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from observability import tracing

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


def submission_span(*, kind: str) -> contextlib.AbstractContextManager:
    """The span around a task submission (a child of the request's span, hence of the caller's trace)."""
    return tracing.span("symphony.task.submit", **{"symphony.task.kind": kind})


def submission_traceparent(incoming: str | None) -> str:
    """What to store with a new task: the current (submission) span when tracing is on, else the
    caller's valid ``traceparent`` header, else ""."""
    return tracing.current_traceparent() or clean_traceparent(incoming)


def task_span(name: str, task: Any, **attributes: Any) -> contextlib.AbstractContextManager:
    """A span named ``name`` in ``task``'s own trace (a child of its stored traceparent)."""
    attributes = {"symphony.task.id": task.pk, "symphony.task.kind": task.kind, **attributes}
    return tracing.span(name, context=tracing.context_from_traceparent(task.traceparent), **attributes)


def record_task_step(name: str, task: Any, **attributes: Any) -> None:
    """Mark a step that just happened to ``task`` (claimed, completed, failed) with a span in its
    trace. The step's own work is in the request's span; this one ties it to the submission."""
    with task_span(name, task, **attributes):
        pass
