"""The audit trail. ``audit.record(...)`` is the one way in (see ``audit.services.record``)."""

from typing import Any


def record(event_type: str, **kwargs: Any) -> Any:
    """Record an audit event inside the caller's transaction. See ``audit.services.record``."""
    from audit.services import record as _record  # imported late: apps are not ready at import time

    return _record(event_type, **kwargs)


def record_many(event_type: str, events: list[dict[str, Any]]) -> list[Any]:
    """Record several events of one type in one INSERT. See ``audit.services.record_many``."""
    from audit.services import record_many as _record_many

    return _record_many(event_type, events)


def seal_now() -> int:
    """Seal every pending event now and return how many. See ``audit.services.seal_now``."""
    from audit.services import seal_now as _seal_now

    return _seal_now()
