"""Dispatch gauges for /metrics, the event metrics, and the agent_orchestra health check."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from prometheus_client import REGISTRY

from agents.health import agent_orchestra_health
from agents.metrics import DispatchCollector
from agents.tests.factories import OrchestraFactory, TaskFactory
from observability import registry

pytestmark = pytest.mark.django_db


def samples(collector):
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for family in collector.collect() for s in family.samples
    }


def test_it_registers_its_collector_and_health_check():
    assert "agent_orchestra" in registry.health_checks()
    assert any(isinstance(c, DispatchCollector) for c in registry.collectors())


def test_it_reports_agents_tasks_and_queue_per_orchestra(make_agent, settings):
    settings.SYMPHONY_AGENT_METRICS_CACHE_SECONDS = 0
    alpha = OrchestraFactory(name="alpha")
    busy = make_agent(orchestra=alpha)
    make_agent()
    busy.api.post("/api/v1/agent/heartbeat/", {"status": "busy"})
    now = timezone.now()
    TaskFactory(orchestra=alpha, created_at=now - timedelta(seconds=30))
    TaskFactory(orchestra=alpha, created_at=now - timedelta(seconds=10))
    TaskFactory(orchestra=alpha, status="succeeded")
    with time_machine.travel(now, tick=False):
        values = samples(DispatchCollector())
    assert values[("symphony_agents", (("status", "busy"),))] == 1
    assert values[("symphony_agents", (("status", "offline"),))] == 1
    assert values[("symphony_tasks", (("status", "pending"),))] == 2
    assert values[("symphony_tasks", (("status", "succeeded"),))] == 1
    assert values[("symphony_task_queue_depth", (("orchestra", "alpha"),))] == 2
    assert values[("symphony_task_oldest_pending_age_seconds", (("orchestra", "alpha"),))] == pytest.approx(30)


def test_it_caches_the_gauges_for_a_few_seconds(settings, django_assert_num_queries):
    settings.SYMPHONY_AGENT_METRICS_CACHE_SECONDS = 60
    collector = DispatchCollector()
    list(collector.collect())
    with django_assert_num_queries(0):
        list(collector.collect())


def test_it_counts_claims_and_outcomes(make_agent, orchestra, django_capture_on_commit_callbacks):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    before_claims = REGISTRY.get_sample_value("symphony_tasks_claimed_total") or 0
    before_ok = REGISTRY.get_sample_value("symphony_task_outcomes_total", {"outcome": "succeeded"}) or 0
    with django_capture_on_commit_callbacks(execute=True):
        worker.api.post("/api/v1/agent/claim/")
        worker.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": 1, "attempt": 1})
    assert REGISTRY.get_sample_value("symphony_tasks_claimed_total") == before_claims + 1
    assert REGISTRY.get_sample_value("symphony_task_outcomes_total", {"outcome": "succeeded"}) == before_ok + 1
    assert REGISTRY.get_sample_value("symphony_task_queue_wait_seconds_count") >= 1


def test_it_is_healthy_with_an_empty_queue():
    result = agent_orchestra_health()
    assert result.status == "healthy"
    assert result.details["backlog"] == 0


def test_it_is_degraded_when_work_waits_and_no_agent_is_online(orchestra):
    TaskFactory(orchestra=orchestra)
    result = agent_orchestra_health()
    assert result.status == "degraded"
    assert result.details == {
        "agents_online": 0,
        "agents_offline": 0,
        "backlog": 1,
        "oldest_pending_age_seconds": result.details["oldest_pending_age_seconds"],
    }


def test_it_is_degraded_when_the_oldest_task_waits_too_long(make_agent, orchestra, settings):
    settings.SYMPHONY_TASK_MAX_PENDING_AGE = 60
    worker = make_agent(orchestra=orchestra)
    worker.api.post("/api/v1/agent/heartbeat/", {"status": "idle"})
    TaskFactory(orchestra=orchestra, created_at=timezone.now() - timedelta(seconds=30))
    assert agent_orchestra_health().status == "healthy"
    TaskFactory(orchestra=orchestra, created_at=timezone.now() - timedelta(seconds=90))
    assert agent_orchestra_health().status == "degraded"
