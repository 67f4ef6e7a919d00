"""The one rate grammar: a preset name or ``<count>/<k><s|m|h|d>``, for settings and API keys alike.

``100/15m`` is a hundred requests per fifteen minutes; ``5000/h`` (``k`` omitted) five thousand an hour.
Presets: ``strict`` (100/15m), ``moderate`` (500/15m) and ``lenient`` (5000/15m), case-insensitive.
The counted form (``Rate.text``) is django-ratelimit's syntax, so its ``get_usage`` reads our counters.
Pure Python: ``symphony/settings.py`` parses its variables with it before Django is set up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: strict and moderate are the predecessor's; lenient (10x moderate, ~5.5 req/s sustained) suits agents.
PRESETS: dict[str, str] = {"strict": "100/15m", "moderate": "500/15m", "lenient": "5000/15m"}
_PATTERN = re.compile(r"(?P<count>[1-9][0-9]{0,11})/(?P<multiplier>[1-9][0-9]{0,5})?(?P<unit>[smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    """``limit`` requests per ``period`` seconds; ``text`` is the counted form (``100/15m``)."""

    limit: int
    period: int
    text: str

    @property
    def per_second(self) -> float:
        """Sustained requests per second, to compare two rates (a smaller value is stricter)."""
        return self.limit / self.period


def parse_rate(value: str) -> Rate:
    """Parse a preset name or a rate such as ``100/15m``. Raises ``ValueError`` saying what is accepted."""
    cleaned = value.strip()
    text = PRESETS.get(cleaned.lower(), cleaned)
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{value!r} is neither a preset ({', '.join(PRESETS)}) nor a rate such as 100/15m "
            "(a count from 1, a slash, an optional multiplier and s, m, h or d)"
        )
    multiplier = int(match["multiplier"] or 1)
    return Rate(int(match["count"]), multiplier * _SECONDS[match["unit"]], text)
