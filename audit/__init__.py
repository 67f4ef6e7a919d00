"""The audit trail. ``audit.record(...)`` is the one way in (see ``audit.services.record``)."""

from typing import Any


def record(event_type: str, **kwargs: Any) -> Any:
    """Record an audit event inside the caller's transaction. See ``audit.services.record``."""
    from audit.services import record as _record  # imported late: apps are not ready at import time

    return _record(event_type, **kwargs)
