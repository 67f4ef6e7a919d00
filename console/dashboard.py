"""The numbers of the console's dashboard, scoped to what the viewer may see.

A fixed number of aggregate queries whatever the size of the tables (``dashboard_numbers`` issues at
most eight, each an aggregate or a small indexed read), so the page and its one-second poll cost the
same with ten tasks or a million. The throughput charts scan the day's finished tasks, the dearest
part: they are cached for ``SYMPHONY_CONSOLE_CHART_CACHE_SECONDS`` per scope (the counts never are).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncHour, TruncMinute
from django.urls import reverse
from django.utils import timezone

from accounts.access import ALL, projects_with
from accounts.models import Project
from agents.flow_models import Budget
from agents.models import Agent, Task
from agents.services.usage import period_start
from audit.models import AuditEvent
from workflows.models import Approval

#: The task statuses the dashboard counts, in the order it shows them.
LIVE_STATUSES = (Task.Status.PENDING, Task.Status.RUNNING, Task.Status.WAITING_APPROVAL)


def _link(name: str, **params: Any) -> str:
    url = reverse(name)
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{url}?{query}" if query else url


def _scoped(queryset: Any, projects: Any, field: str = "project_id") -> Any:
    return queryset if projects is ALL else queryset.filter(**{f"{field}__in": projects})


def _scope_key(projects: Any) -> str:
    text = "all" if projects is ALL else ",".join(str(p) for p in sorted(projects))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def agent_counts(projects: Any, cutoff: datetime) -> dict[str, Any]:
    """Agents by effective status (offline: heartbeat older than the timeout), one query."""
    online = Q(last_heartbeat_at__gte=cutoff)
    aggregates = {status: Count("id", filter=online & Q(status=status)) for status in Agent.Status.values}
    aggregates["offline"] = Count("id", filter=~online | Q(last_heartbeat_at__isnull=True))
    counts = _scoped(Agent.objects.order_by(), projects).aggregate(**aggregates)
    counts["online"] = sum(counts[s] for s in Agent.Status.values if s != Agent.Status.OFFLINE)
    url = "admin:agents_agent_changelist"
    links = {status: _link(url, status=status) for status in [*Agent.Status.values, "online"]}
    return {"counts": counts, "links": links}


def task_rows(projects: Any, now: datetime) -> dict[str, Any]:
    """Live task counts per project and orchestra, failures of the last hour and the oldest pending
    task, in one grouped query over the unfinished tasks and the last hour's failures."""
    hour_ago = now - timedelta(hours=1)
    failed_recently = Q(status=Task.Status.FAILED, finished_at__gte=hour_ago)
    aggregates: dict[str, Any] = {status: Count("id", filter=Q(status=status)) for status in LIVE_STATUSES}
    aggregates["failed_1h"] = Count("id", filter=failed_recently)
    aggregates["oldest"] = Min("created_at", filter=Q(status=Task.Status.PENDING))
    rows = (
        _scoped(Task.objects.order_by(), projects)
        .filter(Q(status__in=LIVE_STATUSES) | failed_recently)
        .values("project_id", "project__slug", "orchestra_id", "orchestra__name")
        .annotate(**aggregates)
        .order_by("project__slug", "orchestra__name")
    )
    url = "admin:agents_task_changelist"
    since = hour_ago.isoformat()
    out, totals, oldest = [], dict.fromkeys([*LIVE_STATUSES, "failed_1h"], 0), None
    for row in rows:
        where = {"project__id__exact": row["project_id"]}
        where.update(
            {"orchestra__id__exact": row["orchestra_id"]} if row["orchestra_id"] else {"orchestra__isnull": "True"}
        )
        links = {s: _link(url, status__exact=s, **where) for s in LIVE_STATUSES}
        links["failed_1h"] = _link(url, status__exact="failed", finished_at__gte=since, **where)
        age = (now - row["oldest"]).total_seconds() if row["oldest"] else None
        out.append(
            {
                "project": row["project__slug"],
                "orchestra": row["orchestra__name"] or "(addressed to one agent)",
                **{k: row[k] for k in totals},
                "oldest_pending_age_seconds": age,
                "links": links,
            }
        )
        for key in totals:
            totals[key] += row[key]
        if row["oldest"] and (oldest is None or row["oldest"] < oldest):
            oldest = row["oldest"]
    total_links = {s: _link(url, status__exact=s) for s in LIVE_STATUSES}
    total_links["failed_1h"] = _link(url, status__exact="failed", finished_at__gte=since)
    total_links["oldest_pending"] = _link(
        url, status__exact="pending", o="8"
    )  # list_display column 8 (created_at), oldest first
    return {
        "totals": totals,
        "links": total_links,
        "rows": out,
        "oldest_pending_age_seconds": (now - oldest).total_seconds() if oldest else None,
    }


def reclaimed_leases(projects: Any, now: datetime) -> dict[str, Any]:
    """Expired leases reaped in the last hour: the ``task.expired`` audit events (index on type, time)."""
    since = now - timedelta(hours=1)
    events = AuditEvent.objects.filter(event_type="task.expired", occurred_at__gte=since)
    if projects is not ALL:
        events = events.filter(project__in=Project.objects.filter(pk__in=projects).values("slug"))
    link = _link("admin:audit_auditevent_changelist", event_type="task.expired", occurred_at__gte=since.isoformat())
    return {"count": events.count(), "link": link}


def throughput(projects: Any, now: datetime) -> dict[str, Any]:
    """Finished tasks per 5 minutes over the last hour and per hour over the last day, succeeded and
    failed, with the failure rates; cached briefly per scope (two grouped queries when not cached)."""
    ttl = settings.SYMPHONY_CONSOLE_CHART_CACHE_SECONDS
    key = f"console:throughput:{_scope_key(projects)}"
    cached = cache.get(key) if ttl else None
    if cached is not None:
        return cached
    finished = _scoped(Task.objects.order_by(), projects).filter(status__in=[Task.Status.SUCCEEDED, Task.Status.FAILED])
    hour_start = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
    day_start = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    hour = _buckets(finished, TruncMinute, hour_start, timedelta(minutes=5), 13)
    day = _buckets(finished, TruncHour, day_start, timedelta(hours=1), 24)
    result = {"hour": hour, "day": day}
    if ttl:
        cache.set(key, result, ttl)
    return result


def _buckets(finished: Any, trunc: Any, start: datetime, width: timedelta, count: int) -> dict[str, Any]:
    rows = (
        finished.filter(finished_at__gte=start)
        .annotate(at=trunc("finished_at"))
        .values("at", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    buckets = [{"start": (start + i * width).isoformat(), "succeeded": 0, "failed": 0} for i in range(count)]
    for row in rows:
        index = int((row["at"] - start) / width)
        if 0 <= index < count:
            buckets[index][row["status"]] += row["n"]
    succeeded = sum(b["succeeded"] for b in buckets)
    failed = sum(b["failed"] for b in buckets)
    rate = failed / (succeeded + failed) if succeeded + failed else None
    return {"buckets": buckets, "succeeded": succeeded, "failed": failed, "failure_rate": rate}


def pending_approvals(projects: Any) -> dict[str, Any]:
    count = _scoped(Approval.objects.order_by(), projects).filter(status=Approval.Status.PENDING).count()
    return {
        "count": count,
        "link": reverse("console:approvals"),
        "list_link": _link("admin:workflows_approval_changelist", status__exact="pending"),
    }


def budget_use(projects: Any, now: datetime) -> list[dict[str, Any]]:
    """Each budget's spend in its current period (a budget not touched this period has spent nothing)."""
    current = {period: period_start(period, now) for period in Budget.Period.values}
    rows = _scoped(Budget.objects.select_related("project", "orchestra"), projects).order_by("project__slug", "id")
    out = []
    for budget in rows[:50]:
        spent = budget.spent if budget.period_start == current[budget.period] else Decimal(0)
        percent = float(spent / budget.limit * 100) if budget.limit else 0.0
        out.append(
            {
                "project": budget.project.slug,
                "orchestra": budget.orchestra.name if budget.orchestra_id else None,
                "period": budget.period,
                "spent": f"{spent:.2f}",
                "limit": f"{budget.limit:.2f}",
                "currency": budget.currency,
                "percent": round(percent, 1),
                "link": reverse("admin:agents_budget_change", args=[budget.pk]),
            }
        )
    return out


def dashboard_numbers(*, viewer: Any) -> dict[str, Any]:
    """Everything the dashboard shows, for ``viewer``: only projects where it holds ``agent:read``
    (budgets: ``orchestra:read``); sections it may not read at all are None. Never raises for
    permissions: an unprivileged viewer gets an empty dashboard."""
    now = timezone.now()
    tasks_in = projects_with(viewer, "agent:read")
    budgets_in = projects_with(viewer, "orchestra:read")
    cutoff = now - timedelta(seconds=settings.SYMPHONY_AGENT_HEARTBEAT_TIMEOUT)
    fleet = bool(tasks_in)
    return {
        "generated_at": now.isoformat(),
        "agents": agent_counts(tasks_in, cutoff) if fleet else None,
        "tasks": task_rows(tasks_in, now) if fleet else None,
        "reclaimed_1h": reclaimed_leases(tasks_in, now) if fleet else None,
        "throughput": throughput(tasks_in, now) if fleet else None,
        "approvals": pending_approvals(tasks_in) if fleet else None,
        "budgets": budget_use(budgets_in, now) if budgets_in else None,
    }
