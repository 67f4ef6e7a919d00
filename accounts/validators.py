"""Field validators shared by the model, the API, the admin and the management commands."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from ratelimit.rates import parse_rate


def validate_rate_limit(value: str) -> None:
    """Accept ``""`` (the endpoint's limit) or what the settings accept: a preset (strict, moderate,
    lenient) or a rate such as ``100/m`` or ``100/15m`` (ratelimit/rates.py)."""
    if not value:
        return
    try:
        parse_rate(value)
    except ValueError as exc:
        raise ValidationError(f"Rate limit {exc}.", code="invalid") from None


def normalize_rate_limit(value: str) -> str:
    """The counted form of a valid rate limit (``moderate`` -> ``500/15m``), ``""`` for none."""
    return parse_rate(value).text if value and value.strip() else ""
