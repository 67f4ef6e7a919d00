"""Field validators shared by the model, the API, the admin and the management commands."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

RATE_LIMIT_PATTERN = re.compile(r"^[1-9][0-9]{0,8}/[smhd]$")


def validate_rate_limit(value: str) -> None:
    """Accept ``""`` (the default limit) or ``<count>/<s|m|h|d>`` such as ``100/m`` or ``5000/h``."""
    if value and not RATE_LIMIT_PATTERN.match(value):
        raise ValidationError(
            "Rate limit must look like 100/m: a positive count, a slash, and s, m, h or d.", code="invalid"
        )
