"""Several schedulers at once on PostgreSQL: every due schedule fires exactly once per tick."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, connections
from django.utils import timezone

from agents.models import Task
from agents.tests.factories import OrchestraFactory, UserFactory
from audit.models import AuditEvent
from tests.servers import ROOT, app_env
from workflows.models import Schedule, ScheduleFiring

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCHEDULES = 60


def _due_schedules(count: int) -> list[Schedule]:
    orchestra, user = OrchestraFactory(name="main"), UserFactory()
    due = timezone.now() - timedelta(seconds=5)
    return Schedule.objects.bulk_create(
        [
            Schedule(
                project_id=orchestra.project_id,
                orchestra=orchestra,
                name=f"s{i}",
                interval_seconds=3600,
                task={"kind": "tick", "input": {"i": i}},
                overlap="allow",
                next_fire_at=due,
                created_by=user,
            )
            for i in range(count)
        ]
    )


def _assert_each_fired_once(schedules: list[Schedule]) -> None:
    assert ScheduleFiring.objects.filter(outcome="fired").count() == len(schedules)
    assert sorted(Task.objects.values_list("input__i", flat=True)) == list(range(len(schedules)))
    assert AuditEvent.objects.filter(event_type="schedule.fired").count() == len(schedules)
    assert not Schedule.objects.filter(next_fire_at__lte=timezone.now()).exists()


def test_three_threads_ticking_at_once_fire_each_schedule_once():
    from workflows.scheduling.ticker import schedule_fire_due

    schedules = _due_schedules(SCHEDULES)
    now, barrier, errors, counts = timezone.now(), threading.Barrier(3), [], []

    def scheduler() -> None:
        try:
            barrier.wait()
            fired = 0
            while batch := schedule_fire_due(now=now, limit=4):
                fired += len(batch)
            counts.append(fired)
        except Exception as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scheduler) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(counts) == SCHEDULES
    _assert_each_fired_once(schedules)


def test_three_scheduler_processes_fire_each_schedule_once(tmp_path: Path):
    schedules = _due_schedules(SCHEDULES)
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = app_env(tmp_path, DATABASE_URL=url, LOG_LEVEL="INFO")
    command = [sys.executable, "manage.py", "run_scheduler", "--once", "--batch", "2"]
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert not any("scheduler_tick_failed" in out for out in outputs), outputs
    fired = [int(out.rsplit("Fired ", 1)[1].split()[0]) for out in outputs]
    assert sum(fired) == SCHEDULES, outputs
    _assert_each_fired_once(schedules)
