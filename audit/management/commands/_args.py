"""Argument parsing shared by the audit commands."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


def parse_moment(name: str, raw: str) -> dt.datetime:
    """An ISO-8601 date or date-time; naive values are UTC. Raises ``CommandError`` naming ``name``."""
    try:
        value = parse_datetime(raw)
        if value is None:
            day = parse_date(raw)
            value = dt.datetime.combine(day, dt.time.min) if day else None
    except ValueError:
        value = None
    if value is None:
        raise CommandError(f"{name}: {raw!r} is not an ISO-8601 date or date-time")
    return value if timezone.is_aware(value) else value.replace(tzinfo=dt.UTC)
