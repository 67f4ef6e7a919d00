"""Task events over HTTP: the holder posts, readers page with ?after=, limits answer 413 naming them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from agents.models import Task, TaskEvent
from agents.tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


def claimed_task(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    r = worker.api.post("/api/v1/agent/claim/", {})
    [claimed] = r.json()["tasks"]
    return worker, task, claimed["attempt"]


def test_the_holder_posts_one_event_or_a_list_numbered_in_order(make_agent, orchestra, admin_api):
    worker, task, attempt = claimed_task(make_agent, orchestra)
    url = f"/api/v1/tasks/{task.pk}/events/"
    one = worker.api.post(url, {"attempt": attempt, "type": "progress", "data": {"percent": 40}})
    assert one.status_code == 201, one.json()
    assert [e["seq"] for e in one.json()] == [1]
    many = worker.api.post(
        url,
        {"attempt": attempt, "events": [
            {"type": "output", "data": {"text": "Hel"}},
            {"type": "log", "data": {"level": "info", "message": "half way"}},
        ]},
    )  # fmt: skip
    assert many.status_code == 201, many.json()
    assert [e["seq"] for e in many.json()] == [2, 3]
    page = admin_api.get(url)
    assert page.status_code == 200
    assert [(e["seq"], e["type"]) for e in page.json()["events"]] == [(1, "progress"), (2, "output"), (3, "log")]
    assert page.json()["events"][0]["data"] == {"percent": 40}
    assert page.json()["next_after"] is None


def test_readers_page_through_events_with_after(make_agent, orchestra, admin_api):
    worker, task, attempt = claimed_task(make_agent, orchestra)
    url = f"/api/v1/tasks/{task.pk}/events/"
    events = [{"type": "output", "data": {"text": str(i)}} for i in range(5)]
    assert worker.api.post(url, {"attempt": attempt, "events": events}).status_code == 201
    first = admin_api.get(url, {"limit": 2}).json()
    assert [e["seq"] for e in first["events"]] == [1, 2]
    assert first["next_after"] == 2
    rest = admin_api.get(url, {"after": first["next_after"], "limit": 10}).json()
    assert [e["seq"] for e in rest["events"]] == [3, 4, 5]
    assert rest["next_after"] is None
    bad = admin_api.get(url, {"after": "x"})
    assert bad.status_code == 400
    assert "after" in bad.json()["error"]["details"]


def test_only_the_current_attempt_of_the_holder_may_post(make_agent, orchestra):
    worker, task, attempt = claimed_task(make_agent, orchestra)
    other = make_agent(orchestra=orchestra)
    url = f"/api/v1/tasks/{task.pk}/events/"
    body = {"type": "log", "data": {"message": "x"}}
    assert other.api.post(url, {"attempt": attempt, **body}).status_code == 403
    stale = worker.api.post(url, {"attempt": attempt + 1, **body})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "lease_lost"
    assert not TaskEvent.objects.exists()


def test_a_user_key_cannot_post_events(make_agent, orchestra, admin_api):
    _, task, attempt = claimed_task(make_agent, orchestra)
    r = admin_api.post(f"/api/v1/tasks/{task.pk}/events/", {"attempt": attempt, "type": "log"})
    assert r.status_code == 403


def test_an_oversized_event_is_refused_with_413_naming_the_limit(make_agent, orchestra, settings):
    settings.SYMPHONY_TASK_EVENT_MAX_BYTES = 100
    worker, task, attempt = claimed_task(make_agent, orchestra)
    r = worker.api.post(
        f"/api/v1/tasks/{task.pk}/events/",
        {"attempt": attempt, "events": [{"type": "log", "data": {}}, {"type": "output", "data": {"text": "x" * 200}}]},
    )
    assert r.status_code == 413
    assert "events[1].data" in r.json()["error"]["message"]
    assert "100 bytes" in r.json()["error"]["message"]
    assert not TaskEvent.objects.exists()  # nothing half-written


def test_too_many_events_are_refused_with_413_naming_the_setting(make_agent, orchestra, settings):
    settings.SYMPHONY_TASK_EVENT_MAX_BATCH = 2
    settings.SYMPHONY_TASK_EVENT_MAX_PER_TASK = 3
    worker, task, attempt = claimed_task(make_agent, orchestra)
    url = f"/api/v1/tasks/{task.pk}/events/"
    three = [{"type": "log", "data": {}}] * 3
    r = worker.api.post(url, {"attempt": attempt, "events": three})
    assert r.status_code == 413
    assert "SYMPHONY_TASK_EVENT_MAX_BATCH" in r.json()["error"]["message"]
    assert worker.api.post(url, {"attempt": attempt, "events": three[:2]}).status_code == 201
    r = worker.api.post(url, {"attempt": attempt, "events": three[:2]})
    assert r.status_code == 413
    assert "SYMPHONY_TASK_EVENT_MAX_PER_TASK" in r.json()["error"]["message"]
    assert TaskEvent.objects.count() == 2


def test_bad_events_are_refused_naming_the_field(make_agent, orchestra):
    worker, task, attempt = claimed_task(make_agent, orchestra)
    url = f"/api/v1/tasks/{task.pk}/events/"
    r = worker.api.post(url, {"attempt": attempt, "type": "shout"})
    assert r.status_code == 400
    assert "type" in r.json()["error"]["details"]
    r = worker.api.post(url, {"attempt": attempt, "events": [{"type": "log", "colour": "red"}]})
    assert r.status_code == 400
    r = worker.api.post(url, {"attempt": attempt})
    assert r.status_code == 400
    assert "type" in r.json()["error"]["details"]


def test_reading_events_needs_agent_read_and_an_existing_task(make_api, make_agent, orchestra):
    _, task, _ = claimed_task(make_agent, orchestra)
    nobody = make_api()
    # A user bound to no project cannot see the task, so it does not exist for them: 404, as on its detail.
    assert nobody.get(f"/api/v1/tasks/{task.pk}/").status_code == 404
    assert nobody.get(f"/api/v1/tasks/{task.pk}/events/").status_code == 404
    viewer = make_api("viewer")
    assert viewer.get(f"/api/v1/tasks/{task.pk}/events/").status_code == 200
    assert viewer.get("/api/v1/tasks/999999/events/").status_code == 404


def test_purge_deletes_only_events_of_tasks_finished_before_the_retention(make_agent, orchestra, settings):
    settings.SYMPHONY_TASK_EVENT_RETENTION_DAYS = 7
    worker, task, attempt = claimed_task(make_agent, orchestra)
    worker.api.post(f"/api/v1/tasks/{task.pk}/events/", {"attempt": attempt, "type": "log"})
    running = TaskFactory(orchestra=orchestra)
    TaskEvent.objects.create(task=running, seq=1, type="log", attempt=1)
    Task.objects.filter(pk=task.pk).update(status="succeeded", lease_expires_at=None,
                                           finished_at=timezone.now() - timedelta(days=3))  # fmt: skip
    call_command("purge_task_events")
    assert TaskEvent.objects.count() == 2  # finished 3 days ago: kept
    Task.objects.filter(pk=task.pk).update(finished_at=timezone.now() - timedelta(days=8))
    call_command("purge_task_events")
    assert list(TaskEvent.objects.values_list("task_id", flat=True)) == [running.pk]
