"""The schedules API through the real stack: validation naming the field, actions, firings, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from agents.models import Task
from audit.models import AuditEvent
from workflows.models import Schedule, ScheduleFiring, WorkflowRun
from workflows.scheduling.ticker import schedule_fire_due

pytestmark = pytest.mark.django_db

TASK = {"kind": "report", "input": {"n": 1}}


def create(api, orchestra, **fields):
    body = {"orchestra": orchestra.pk, "name": "nightly", "cron": "*/5 * * * *", "task": TASK, **fields}
    return api.post("/api/v1/schedules/", body)


def error_field(r) -> set[str]:
    return set(r.json()["error"]["details"])


def test_it_creates_a_cron_schedule_with_its_next_firings(admin_api, orchestra):
    with time_machine.travel(datetime(2026, 3, 1, 10, 2, tzinfo=UTC), tick=False):
        r = create(admin_api, orchestra, timezone="Europe/Paris")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["next_fire_at"] == "2026-03-01T10:05:00Z"
    assert body["next_firings"][:2] == ["2026-03-01T10:05:00+00:00", "2026-03-01T10:10:00+00:00"]
    assert body["task"] == {**TASK, "required_capabilities": [], "priority": "normal", "max_attempts": 3}
    assert body["project"] == orchestra.project.slug
    assert AuditEvent.objects.filter(event_type="schedule.created").count() == 1


def test_it_reads_cron_in_the_schedules_time_zone(admin_api, orchestra):
    with time_machine.travel(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), tick=False):
        r = create(admin_api, orchestra, cron="0 9 * * *", timezone="Europe/Paris")
    assert r.json()["next_fire_at"] == "2026-07-02T07:00:00Z"  # 09:00 in Paris, summer time


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../etc/passwd"}, "timezone"),
        ({"cron": None, "interval_seconds": 0}, "interval_seconds"),
        ({"interval_seconds": 60}, "cron"),  # both cron and interval
        ({"task": None, "workflow": None}, "task"),
        ({"workflow": {"steps": [{"key": "a", "kind": "x"}]}}, "task"),  # both task and workflow
        ({"task": {"kind": "bad kind!"}}, "task"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"workflow": {"steps": [{"key": "a", "kind": "x", "depends_on": ["zz"]}]}, "task": None}, "workflow"),
    ],
)
def test_it_refuses_bad_input_naming_the_field(admin_api, orchestra, fields, field):
    body = {"orchestra": orchestra.pk, "name": "n", "cron": "*/5 * * * *", "task": TASK, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    r = admin_api.post("/api/v1/schedules/", body)
    assert r.status_code == 400, r.content
    assert field in error_field(r)
    assert not Schedule.objects.exists()


def test_it_refuses_a_duplicate_name_in_the_project(admin_api, orchestra):
    assert create(admin_api, orchestra).status_code == 201
    r = create(admin_api, orchestra)
    assert r.status_code == 400 and "name" in error_field(r)


def test_a_tick_fires_a_due_schedule_once_and_records_it(admin_api, orchestra):
    start = datetime(2026, 3, 1, 10, 2, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        schedule_id = create(admin_api, orchestra).json()["id"]
    assert schedule_fire_due(now=start + timedelta(minutes=1)) == []  # not due yet
    firings = schedule_fire_due(now=start + timedelta(minutes=3))
    assert [f.outcome for f in firings] == ["fired"]
    assert schedule_fire_due(now=start + timedelta(minutes=3)) == []  # same tick: never twice
    body = admin_api.get(f"/api/v1/schedules/{schedule_id}/").json()
    task = Task.objects.get()
    assert (task.kind, task.input, task.orchestra_id) == ("report", {"n": 1}, orchestra.pk)
    assert body["last_task"] == task.pk
    assert body["last_fired_at"] == "2026-03-01T10:05:00Z"
    assert body["next_fire_at"] == "2026-03-01T10:10:00Z"
    history = admin_api.get(f"/api/v1/schedules/{schedule_id}/firings/").json()["results"]
    assert [(h["outcome"], h["task"], h["scheduled_for"]) for h in history] == [
        ("fired", task.pk, "2026-03-01T10:05:00Z")
    ]
    assert AuditEvent.objects.filter(event_type="schedule.fired").count() == 1


def test_after_downtime_missed_ticks_fire_once(admin_api, orchestra):
    start = datetime(2026, 3, 1, 10, 2, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        schedule_id = create(admin_api, orchestra, overlap="allow").json()["id"]
    firings = schedule_fire_due(now=start + timedelta(hours=1, minutes=1))  # 10:05 ... 11:00 missed
    assert [(f.outcome, f.missed) for f in firings] == [("fired", 11)]
    assert Task.objects.count() == 1
    assert Schedule.objects.get(pk=schedule_id).next_fire_at == datetime(2026, 3, 1, 11, 5, tzinfo=UTC)


def test_an_interval_keeps_its_phase_after_downtime(admin_api, orchestra):
    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        schedule_id = admin_api.post(
            "/api/v1/schedules/",
            {"orchestra": orchestra.pk, "name": "i", "interval_seconds": 60, "task": TASK, "overlap": "allow"},
        ).json()["id"]
    [firing] = schedule_fire_due(now=start + timedelta(seconds=150))
    assert firing.missed == 1
    assert Schedule.objects.get(pk=schedule_id).next_fire_at == start + timedelta(seconds=180)


def test_overlap_skip_waits_for_the_previous_task(admin_api, orchestra):
    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        schedule_id = admin_api.post(
            "/api/v1/schedules/", {"orchestra": orchestra.pk, "name": "i", "interval_seconds": 60, "task": TASK}
        ).json()["id"]
    schedule_fire_due(now=start + timedelta(seconds=60))
    [skipped] = schedule_fire_due(now=start + timedelta(seconds=120))
    assert skipped.outcome == "skipped" and "unfinished" in skipped.detail
    assert Task.objects.count() == 1
    r = admin_api.post(f"/api/v1/schedules/{schedule_id}/run-now/")
    assert r.status_code == 409 and r.json()["error"]["code"] == "schedule_overlap"
    Task.objects.update(status=Task.Status.SUCCEEDED)
    [fired] = schedule_fire_due(now=start + timedelta(seconds=180))
    assert fired.outcome == "fired" and Task.objects.count() == 2


def test_pause_resume_and_run_now(admin_api, orchestra):
    schedule_id = create(admin_api, orchestra).json()["id"]
    r = admin_api.post(f"/api/v1/schedules/{schedule_id}/pause/")
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["next_fire_at"] is None
    assert r.json()["next_firings"] == []
    assert schedule_fire_due(now=datetime(2100, 1, 1, tzinfo=UTC)) == []  # paused: never due
    r = admin_api.post(f"/api/v1/schedules/{schedule_id}/run-now/")
    assert r.status_code == 201 and r.json()["trigger"] == "manual" and r.json()["task"] == Task.objects.get().pk
    r = admin_api.post(f"/api/v1/schedules/{schedule_id}/resume/")
    assert r.json()["enabled"] is True and r.json()["next_fire_at"] is not None
    types = set(AuditEvent.objects.values_list("event_type", flat=True))
    assert {"schedule.paused", "schedule.resumed", "schedule.fired"} <= types


def test_a_workflow_schedule_fires_a_run(admin_api, orchestra):
    steps = [{"key": "a", "kind": "x"}, {"key": "b", "kind": "y", "depends_on": ["a"]}]
    r = admin_api.post(
        "/api/v1/schedules/",
        {"orchestra": orchestra.pk, "name": "wf", "interval_seconds": 60, "workflow": {"steps": steps}},
    )
    assert r.status_code == 201, r.content
    assert [s["key"] for s in r.json()["workflow"]["steps"]] == ["a", "b"]
    fired = admin_api.post(f"/api/v1/schedules/{r.json()['id']}/run-now/").json()
    run = WorkflowRun.objects.get()
    assert fired["run"] == run.pk and run.name == "wf" and run.step_count == 2


def test_a_refused_submission_is_a_failed_firing_and_the_schedule_moves_on(admin_api, orchestra):
    start = datetime(2026, 3, 1, 10, 2, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        schedule_id = create(admin_api, orchestra).json()["id"]
    orchestra.state = "stopped"
    orchestra.save()
    [firing] = schedule_fire_due(now=start + timedelta(minutes=3))
    assert firing.outcome == "failed" and "stopped" in firing.detail
    assert not Task.objects.exists()
    assert Schedule.objects.get(pk=schedule_id).next_fire_at == datetime(2026, 3, 1, 10, 10, tzinfo=UTC)


def test_patch_changes_the_timing_and_delete_removes_it(admin_api, orchestra):
    schedule_id = create(admin_api, orchestra).json()["id"]
    r = admin_api.patch(f"/api/v1/schedules/{schedule_id}/", {"interval_seconds": 30})
    assert r.status_code == 200 and r.json()["cron"] == "" and r.json()["interval_seconds"] == 30
    r = admin_api.patch(f"/api/v1/schedules/{schedule_id}/", {"timezone": "Nowhere/Land"})
    assert r.status_code == 400 and "timezone" in error_field(r)
    assert admin_api.delete(f"/api/v1/schedules/{schedule_id}/").status_code == 204
    assert not Schedule.objects.exists() and not ScheduleFiring.objects.exists()


def test_a_viewer_cannot_create_and_filters_apply(make_api, admin_api, orchestra):
    create(admin_api, orchestra)
    viewer = make_api("viewer")
    assert create(viewer, orchestra, name="other").status_code == 403
    assert len(viewer.get("/api/v1/schedules/", {"project": orchestra.project.slug}).json()["results"]) == 1
    assert viewer.get("/api/v1/schedules/", {"project": "nope"}).json()["results"] == []
    assert viewer.get("/api/v1/schedules/", {"enabled": "false"}).json()["results"] == []
