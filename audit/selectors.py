"""Reads of the audit trail shared by the API and the admin."""

from __future__ import annotations

from django.db.models import QuerySet

from audit.models import AuditEvent


def audit_event_list() -> QuerySet[AuditEvent]:
    """Every event, newest first. ``actor_name`` is denormalised, so no join is needed."""
    return AuditEvent.objects.order_by("-id")
