"""The usage page's numbers: LLM tokens and cost over a period, over time and per project, orchestra,
agent and model, scoped like the API's ``GET /api/v1/usage/`` (projects where the viewer holds
``orchestra:read``).

Five grouped aggregates over ``UsageRecord`` whatever the number of records (one for the time series,
one per table), each on the ``(project, created_at)`` index's range. Money of different currencies is
never added: every row and every cost series is per currency.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.urls import reverse
from django.utils import timezone

from accounts.access import ALL, projects_with
from agents.flow_models import UsageRecord

#: Period name: (its length, the bucket width, the truncation giving a record's bucket, tick format).
PERIODS = {
    "24h": (dt.timedelta(hours=24), dt.timedelta(hours=1), TruncHour, "%H:00"),
    "7d": (dt.timedelta(days=7), dt.timedelta(days=1), TruncDay, "%a %d"),
    "30d": (dt.timedelta(days=30), dt.timedelta(days=1), TruncDay, "%m-%d"),
}
DEFAULT_PERIOD = "24h"

#: Table: (the record field grouped on, the label field shown, the changelist filter of one row).
GROUPS = {
    "project": ("project_id", "project__slug", "project__id__exact"),
    "orchestra": ("orchestra_id", "orchestra__name", "orchestra__id__exact"),
    "agent": ("agent_id", "agent__name", "agent__id__exact"),
    "model": ("model", "model", "model"),
}
SUMS = {"input_tokens": Sum("input_tokens"), "output_tokens": Sum("output_tokens"), "cost": Sum("cost")}


def _records(viewer: Any) -> Any:
    projects = projects_with(viewer, "orchestra:read")
    records = UsageRecord.objects.order_by()
    return records if projects is ALL else records.filter(project_id__in=projects)


def _series(records: Any, start: dt.datetime, width: dt.timedelta, trunc: Any, count: int) -> dict[str, Any]:
    rows = records.annotate(at=trunc("created_at", tzinfo=dt.UTC)).values("at", "currency").annotate(**SUMS).order_by()
    buckets = [{"start": start + i * width, "input_tokens": 0, "output_tokens": 0, "cost": {}} for i in range(count)]
    currencies: set[str] = set()
    for row in rows:
        index = int((row["at"] - start) / width)
        if 0 <= index < count:
            bucket = buckets[index]
            bucket["input_tokens"] += row["input_tokens"] or 0
            bucket["output_tokens"] += row["output_tokens"] or 0
            bucket["cost"][row["currency"]] = bucket["cost"].get(row["currency"], Decimal(0)) + (row["cost"] or 0)
            currencies.add(row["currency"])
    return {"buckets": buckets, "currencies": sorted(currencies)}


def _table(records: Any, group: str, since: dt.datetime) -> list[dict[str, Any]]:
    key, label, lookup = GROUPS[group]
    rows = (
        records.values(key, label, "currency")
        .annotate(**SUMS, records=Count("id"))
        .order_by(F("cost").desc(nulls_last=True), label)[:100]
    )
    url = reverse("admin:agents_usagerecord_changelist")
    out = []
    for row in rows:
        where = {lookup: row[key]} if row[key] is not None else {f"{lookup.split('__')[0]}__isnull": "True"}
        query = urlencode({**where, "currency__exact": row["currency"], "created_at__gte": since.isoformat()})
        out.append(
            {
                "name": row[label] if row[label] is not None else "(none)",
                "input_tokens": row["input_tokens"] or 0,
                "output_tokens": row["output_tokens"] or 0,
                "tokens": (row["input_tokens"] or 0) + (row["output_tokens"] or 0),
                "cost": row["cost"] or Decimal(0),
                "currency": row["currency"],
                "records": row["records"],
                "link": f"{url}?{query}",
            }
        )
    return out


def usage_numbers(*, viewer: Any, period: str = DEFAULT_PERIOD, now: dt.datetime | None = None) -> dict[str, Any]:
    """Tokens and cost of the last ``period`` (a key of ``PERIODS``; ``KeyError`` otherwise) for
    ``viewer``'s projects: a time series and one table per group. Five queries."""
    length, width, trunc, tick_format = PERIODS[period]
    now = now or timezone.now()
    end = _floor(now, width) + width  # the current bucket is the last one
    count = int(length / width)
    start = end - count * width
    records = _records(viewer).filter(created_at__gte=start)
    series = _series(records, start, width, trunc, count)
    tables = {group: _table(records, group, start) for group in GROUPS}
    totals: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "cost": {}}
    for row in tables["project"]:
        totals["input_tokens"] += row["input_tokens"]
        totals["output_tokens"] += row["output_tokens"]
        totals["cost"][row["currency"]] = totals["cost"].get(row["currency"], Decimal(0)) + row["cost"]
    return {
        "period": period,
        "since": start,
        "until": end,
        "tick_format": tick_format,
        "series": series,
        "tables": tables,
        "totals": totals,
        "scoped": projects_with(viewer, "orchestra:read") is not ALL,
        "readable": bool(projects_with(viewer, "orchestra:read")),
    }


def _floor(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    moment = moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if width >= dt.timedelta(days=1) else moment


def agent_usage(agent: Any, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """An agent's tokens and cost, in the last 24 hours and in all, per currency (one query)."""
    from django.db.models import Q

    since = (now or timezone.now()) - dt.timedelta(hours=24)
    recent = Q(created_at__gte=since)
    rows = (
        UsageRecord.objects.filter(agent=agent)
        .order_by()
        .values("currency")
        .annotate(
            all_input=Sum("input_tokens"),
            all_output=Sum("output_tokens"),
            all_cost=Sum("cost"),
            records=Count("id"),
            day_input=Sum("input_tokens", filter=recent),
            day_output=Sum("output_tokens", filter=recent),
            day_cost=Sum("cost", filter=recent),
        )
        .order_by("currency")
    )
    return [
        {
            "currency": row["currency"],
            "tokens": (row["all_input"] or 0) + (row["all_output"] or 0),
            "cost": row["all_cost"] or Decimal(0),
            "day_tokens": (row["day_input"] or 0) + (row["day_output"] or 0),
            "day_cost": row["day_cost"] or Decimal(0),
            "records": row["records"],
        }
        for row in rows
    ]
