"""The claim's candidate SELECT, written once as PostgreSQL SQL, against its ORM definition.

``dispatch._lock_candidates`` runs hand-written SQL on PostgreSQL (the ORM took longer to build and
compile it than the database took to run it); ``dispatch.claim_candidates_queryset`` is what it must
mean. Each case builds a world where one rule decides, and both must pick the same tasks in order.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from agents.flow_models import Budget, ConcurrencyLimit
from agents.models import Orchestra, Task
from agents.services.dispatch import _lock_candidates, claim_candidates_queryset
from agents.services.usage import period_start
from agents.tests.factories import OrchestraFactory, TaskFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def both(agent):
    now = timezone.now()
    with transaction.atomic():
        raw = [task.pk for task in _lock_candidates(agent, 100, now)]
    orm = list(claim_candidates_queryset(agent).values_list("pk", flat=True)[:100])
    assert raw == orm
    return raw


def running(orchestra, holder, key):
    lease = timezone.now() + dt.timedelta(minutes=1)
    return TaskFactory(orchestra=orchestra, concurrency_key=key, status=Task.Status.RUNNING, agent=holder,
                       lease_expires_at=lease)  # fmt: skip


def test_they_agree_on_orchestras_targets_capabilities_and_order(make_agent, orchestra):
    worker = make_agent(capabilities=["gpu", "echo"], orchestra=orchestra)
    stopped = OrchestraFactory(state=Orchestra.State.STOPPED)
    stopped.agents.add(worker.agent)
    elsewhere = OrchestraFactory()
    base = timezone.now() - dt.timedelta(minutes=5)
    plain = TaskFactory(orchestra=orchestra, created_at=base)
    urgent = TaskFactory(orchestra=orchestra, priority=3, created_at=base + dt.timedelta(seconds=2))
    later_turn = TaskFactory(orchestra=orchestra, fair_seq=5, created_at=base - dt.timedelta(seconds=9))
    gpu = TaskFactory(orchestra=orchestra, required_capabilities=["gpu"], created_at=base + dt.timedelta(seconds=1))
    TaskFactory(orchestra=orchestra, required_capabilities=["tpu"])
    TaskFactory(orchestra=stopped)
    TaskFactory(orchestra=elsewhere)
    running(orchestra, worker.agent, "")
    mine = TaskFactory(orchestra=None, target_agent=worker.agent)
    TaskFactory(orchestra=orchestra, target_agent=make_agent(orchestra=orchestra).agent)
    picked = both(worker.agent)
    assert set(picked) == {plain.pk, urgent.pk, later_turn.pk, gpu.pk, mine.pk}
    assert picked[0] == urgent.pk


def test_they_agree_on_spent_budgets(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    other = OrchestraFactory(project=orchestra.project)
    other.agents.add(worker.agent)
    TaskFactory(orchestra=orchestra)
    kept = TaskFactory(orchestra=other)
    today = period_start("day")
    budget = Budget.objects.create(
        project=orchestra.project, orchestra=orchestra, limit=Decimal(1), spent=Decimal(1), period="day",
        period_start=today, currency="USD",
    )  # fmt: skip
    assert both(worker.agent) == [kept.pk]
    budget.period_start = today - dt.timedelta(days=1)  # an old period's spending does not count
    budget.save()
    assert len(both(worker.agent)) == 2
    Budget.objects.create(
        project=orchestra.project, limit=Decimal(5), spent=Decimal(7), period="month",
        period_start=period_start("month"), currency="USD",
    )  # fmt: skip
    assert both(worker.agent) == []


def test_they_agree_on_full_concurrency_keys(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    ConcurrencyLimit.objects.create(project=orchestra.project, key="full", max_running=1)
    ConcurrencyLimit.objects.create(project=orchestra.project, key="room", max_running=2)
    running(orchestra, worker.agent, "full")
    running(orchestra, worker.agent, "room")
    TaskFactory(orchestra=orchestra, concurrency_key="full")
    room = TaskFactory(orchestra=orchestra, concurrency_key="room")
    free = TaskFactory(orchestra=orchestra, concurrency_key="unlimited")
    assert set(both(worker.agent)) == {room.pk, free.pk}
