"""The ``agent_orchestra`` component of ``/health``: is the fleet keeping up with the queue?"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone

from observability.registry import DEGRADED, HEALTHY, HealthResult


def agent_orchestra_health() -> HealthResult:
    """Healthy when pending work has online agents and nothing waits too long; degraded otherwise.

    Never unhealthy: an idle or empty fleet does not make the control plane unable to serve, and a
    database that cannot answer is the ``database`` component's verdict, not this one's.
    """
    try:
        return _assess()
    except DatabaseError as exc:
        return HealthResult(DEGRADED, f"cannot read the fleet: {exc.__class__.__name__}", {})


def _assess() -> HealthResult:
    from agents.metrics import agent_status_counts
    from agents.models import Task

    counts = agent_status_counts()
    offline = counts.pop("offline", 0)
    online = sum(counts.values())
    backlog = Task.objects.pending().order_by().aggregate(n=Count("id"), oldest=Min("created_at"))
    oldest_age = (timezone.now() - backlog["oldest"]).total_seconds() if backlog["oldest"] else 0.0
    details = {
        "agents_online": online,
        "agents_offline": offline,
        "backlog": backlog["n"],
        "oldest_pending_age_seconds": round(oldest_age, 3),
    }
    limit = settings.SYMPHONY_TASK_MAX_PENDING_AGE
    if backlog["n"] and not online:
        return HealthResult(DEGRADED, f"{backlog['n']} pending task(s) and no agent online", details)
    if oldest_age > limit:
        return HealthResult(DEGRADED, f"the oldest pending task has waited {oldest_age:.0f}s (limit {limit}s)", details)
    return HealthResult(HEALTHY, f"{online} agent(s) online, {backlog['n']} pending", details)
