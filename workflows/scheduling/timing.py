"""When a schedule fires: cron expressions (croniter, read in the schedule's time zone) and intervals.

Times are stored in UTC; a cron expression is evaluated in the schedule's IANA time zone, so
``0 9 * * *`` in Europe/Paris fires at 09:00 Paris time on both sides of a DST change (a local time
that does not exist that day fires at the next one that does, as croniter does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

#: Beyond this many missed cron ticks the count stops (the next tick is then found from now directly).
MISSED_COUNT_LIMIT = 1000


def parse_timezone(name: str) -> ZoneInfo:
    """The zone called ``name``. Raises ``ValueError`` for a name that is not an IANA time zone."""
    try:
        if not name or name != name.strip() or "\x00" in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"'{name}' is not an IANA time zone (for example 'Europe/Paris' or 'UTC').") from None


def validate_cron(expression: str) -> str:
    """``expression`` normalised (single spaces). Raises ``ValueError`` unless it is a valid five-field cron."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("A cron expression has five fields: minute hour day-of-month month day-of-week.")
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise ValueError(f"'{normalised}' is not a valid cron expression.")
    return normalised


def _cron_next(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    return croniter(expression, after.astimezone(zone)).get_next(datetime).astimezone(UTC)


def next_after(*, cron: str, interval_seconds: int | None, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after ``after`` (an interval counts from ``after`` itself)."""
    if interval_seconds:
        return after + timedelta(seconds=interval_seconds)
    return _cron_next(cron, parse_timezone(timezone), after)


def upcoming(*, cron: str, interval_seconds: int | None, timezone: str, start: datetime, count: int) -> list[datetime]:
    """``count`` ticks from ``start`` (included) on: the next firings to show an operator."""
    ticks = [start]
    while len(ticks) < count:
        if interval_seconds:
            ticks.append(ticks[-1] + timedelta(seconds=interval_seconds))
        else:
            ticks.append(_cron_next(cron, parse_timezone(timezone), ticks[-1]))
    return ticks


def fold_missed(
    *, cron: str, interval_seconds: int | None, timezone: str, due: datetime, now: datetime
) -> tuple[int, datetime]:
    """For a tick ``due`` fired at ``now``: ``(missed, next_fire_at)``.

    ``missed`` counts the ticks after ``due`` that have also passed by ``now``: they are folded into
    this one firing (after downtime a schedule fires once, not once per missed tick), and
    ``next_fire_at`` is the first tick after ``now`` on the schedule's own grid (an interval keeps
    its phase).
    """
    if interval_seconds:
        step = timedelta(seconds=interval_seconds)
        passed = int((now - due) // step) if now >= due else 0
        return passed, due + (passed + 1) * step
    zone = parse_timezone(timezone)
    missed, tick = 0, _cron_next(cron, zone, due)
    while tick <= now:
        missed += 1
        if missed >= MISSED_COUNT_LIMIT:
            return missed, _cron_next(cron, zone, now)
        tick = _cron_next(cron, zone, tick)
    return missed, tick
