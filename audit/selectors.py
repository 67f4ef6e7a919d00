"""Reads of the audit trail shared by the API and the admin."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import QuerySet

from audit.models import AuditEvent

#: Installed by the identity app at start-up (audit knows nothing of users' roles):
#: ``scope(viewer, code)`` -> None when ``viewer`` may see every event with ``code``, else the
#: slugs of the projects whose events it may see.
_project_scope: Callable[[Any, str], Iterable[str] | None] | None = None


def register_project_scope(scope: Callable[[Any, str], Iterable[str] | None]) -> None:
    """Install the function that says which projects' events a viewer may see (see ``_project_scope``)."""
    global _project_scope
    _project_scope = scope


def audit_event_list(*, viewer: Any = None, code: str = "audit:read") -> QuerySet[AuditEvent]:
    """Events newest first; with ``viewer``, only those it may see with ``code``: all of them for a
    global holder, else the events of the projects where it holds ``code`` (events outside any
    project are then hidden). ``actor_name`` is denormalised, so no join is needed."""
    events = AuditEvent.objects.order_by("-id")
    if viewer is None or _project_scope is None:
        return events
    slugs = _project_scope(viewer, code)
    return events if slugs is None else events.filter(project__in=sorted(slugs))
