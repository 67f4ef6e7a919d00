"""Prometheus metrics of dispatch.

Event metrics (counters, histograms) live in prometheus_client's default registry, which works in
multiprocess mode under gunicorn. Services bump them in ``transaction.on_commit`` so a rolled-back
claim is never counted. State gauges (agents by status, tasks by status, queue depth, oldest pending
age) are computed at scrape time by ``DispatchCollector``, registered with observability.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

TASKS_SUBMITTED = Counter("symphony_tasks_submitted_total", "Tasks submitted (idempotent replays excluded).")
TASKS_CLAIMED = Counter("symphony_tasks_claimed_total", "Task attempts handed to agents by claims.")
TASK_OUTCOMES = Counter(
    "symphony_task_outcomes_total",
    "Finished task attempts by outcome (succeeded, failed, requeued, expired, cancelled).",
    ["outcome"],
)
TASK_DURATION = Histogram(
    "symphony_task_duration_seconds",
    "From claim to completion or failure of one attempt, by outcome.",
    ["outcome"],
    buckets=_DURATION_BUCKETS,
)
TASK_QUEUE_WAIT = Histogram(
    "symphony_task_queue_wait_seconds", "From submission to first claim.", buckets=_WAIT_BUCKETS
)


def observe_outcome(outcome: str, duration: float | None) -> None:
    TASK_OUTCOMES.labels(outcome=outcome).inc()
    if duration is not None:
        TASK_DURATION.labels(outcome=outcome).observe(max(duration, 0.0))


class DispatchCollector:
    """Scrape-time gauges from the database: one aggregate query each, cached a few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ttl = settings.SYMPHONY_AGENT_METRICS_CACHE_SECONDS
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] >= ttl:
                self._cached = (time.monotonic(), self._families())
            families = self._cached[1]
        yield from families

    def describe(self) -> list[Any]:
        return []  # computed at scrape time; keeps registration from querying the database

    def _families(self) -> list[GaugeMetricFamily]:
        from agents.models import Task

        agents = GaugeMetricFamily("symphony_agents", "Agents by effective status.", labels=["status"])
        for status, count in agent_status_counts().items():
            agents.add_metric([status], count)

        tasks = GaugeMetricFamily("symphony_tasks", "Tasks by status.", labels=["status"])
        counts = dict(Task.objects.order_by().values_list("status").annotate(n=Count("id")))
        for status in Task.Status.values:
            tasks.add_metric([status], counts.get(status, 0))

        depth = GaugeMetricFamily("symphony_task_queue_depth", "Pending tasks per orchestra.", labels=["orchestra"])
        oldest = GaugeMetricFamily(
            "symphony_task_oldest_pending_age_seconds",
            "Age of the oldest pending task per orchestra.",
            labels=["orchestra"],
        )
        now = timezone.now()
        rows = (
            Task.objects.pending()
            .order_by()
            .values("orchestra__name")
            .annotate(n=Count("id"), oldest=Min("created_at"))
        )
        for row in rows:
            name = row["orchestra__name"] or "(direct)"
            depth.add_metric([name], row["n"])
            oldest.add_metric([name], (now - row["oldest"]).total_seconds())
        return [agents, tasks, depth, oldest]


def agent_status_counts() -> dict[str, int]:
    """Agents per effective status in one query (offline is derived from the heartbeat age)."""
    from agents.models import Agent

    cutoff = timezone.now() - timedelta(seconds=settings.SYMPHONY_AGENT_HEARTBEAT_TIMEOUT)
    online = Q(last_heartbeat_at__gte=cutoff)
    aggregates = {status: Count("id", filter=online & Q(status=status)) for status in Agent.Status.values}
    aggregates["offline"] = Count("id", filter=~online | Q(last_heartbeat_at__isnull=True))
    return Agent.objects.order_by().aggregate(**aggregates)


#: The one collector instance, registered with observability from ``AgentsConfig.ready()``.
COLLECTOR = DispatchCollector()


USAGE_TOKENS = Counter(
    "symphony_llm_tokens_total",
    "LLM tokens reported by tasks, by project, model and direction (input, output).",
    ["project", "model", "direction"],
)
USAGE_COST = Counter(
    "symphony_llm_cost_total",
    "LLM cost reported by tasks, by project, model and currency (a float here; the API sums exact decimals).",
    ["project", "model", "currency"],
)
_usage_labels: set[tuple[str, str]] = set()
_usage_lock = threading.Lock()


def _bounded(project: str, model: str) -> tuple[str, str]:
    """Keep at most SYMPHONY_USAGE_METRIC_SERIES (project, model) pairs per process; later ones are 'other'.

    Model names come from agents, so without a bound a buggy or hostile agent could create a series
    per request.
    """
    pair = (project, model)
    with _usage_lock:
        if pair in _usage_labels:
            return pair
        if len(_usage_labels) < settings.SYMPHONY_USAGE_METRIC_SERIES:
            _usage_labels.add(pair)
            return pair
    return (project, "other")


def observe_usage(project_slug: str, records: list[Any]) -> None:
    for record in records:
        project, model = _bounded(project_slug, record.model)
        USAGE_TOKENS.labels(project, model, "input").inc(record.input_tokens)
        USAGE_TOKENS.labels(project, model, "output").inc(record.output_tokens)
        currency = record.currency if record.currency in settings.SYMPHONY_USAGE_CURRENCIES else "other"
        USAGE_COST.labels(project, model, currency).inc(float(record.cost))
