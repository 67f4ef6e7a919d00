"""Live task streams (server-sent events) under the real ASGI server, uvicorn, as production runs them."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from agents.tests.factories import TaskFactory
from tests.servers import app_env, free_port, running, wait_for

# serialized_rollback: the flush after a transactional test would leave the next test without the seeded data.
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.slow]


def parse_sse(lines: Any, until: str = "end") -> list[tuple[str | None, str, str]]:
    """(id, event, data) of each event until ``until`` (comments and ``retry:`` skipped)."""
    out: list[tuple[str | None, str, str]] = []
    current: dict[str, str] = {}
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if line == "":
            if "data" in current:
                out.append((current.get("id"), current.get("event", "message"), current["data"]))
                if current.get("event") == until:
                    return out
            current = {}
            continue
        if line.startswith(":"):
            current.setdefault("comment", line)
            continue
        field, _, value = line.partition(": ")
        current[field] = value
    return out


def uvicorn_env(tmp_path: Path) -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return app_env(tmp_path, DATABASE_URL=url, SYMPHONY_STREAM_HEARTBEAT_SECONDS="0.5")


def uvicorn(tmp_path: Path, env: dict[str, str]):
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "symphony.asgi:application", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log"]  # fmt: skip
    return port, running(command, env=env, log=tmp_path / "uvicorn.log")


@pytest.mark.postgres
def test_a_stream_replays_then_follows_events_and_status_until_the_task_ends(make_agent, orchestra, tmp_path, make_api):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    worker = make_agent(orchestra=orchestra)
    reader = make_api("viewer")
    task = TaskFactory(orchestra=orchestra)
    [claimed] = worker.api.post("/api/v1/agent/claim/", {}).json()["tasks"]
    url = f"/api/v1/tasks/{task.pk}/events/"
    attempt = claimed["attempt"]
    worker.api.post(url, {"attempt": attempt, "type": "progress", "data": {"percent": 10}})
    worker.api.post(url, {"attempt": attempt, "type": "output", "data": {"text": "He"}})
    port, server = uvicorn(tmp_path, uvicorn_env(tmp_path))
    with server as process:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health/live", timeout=60, process=process) == 200
        stream_url = f"{base}/api/v1/tasks/{task.pk}/stream/"
        assert requests.get(stream_url, timeout=10).status_code == 401
        nobody = make_api()
        denied = requests.get(stream_url, headers=nobody._headers({}), timeout=10)
        assert denied.status_code == 403
        assert denied.json()["error"]["code"]
        missing = requests.get(f"{base}/api/v1/tasks/999999/stream/", headers=reader._headers({}), timeout=10)
        assert missing.status_code == 404
        received: list[tuple[str | None, str, str]] = []
        arrivals: dict[str, float] = {}

        def consume() -> None:
            headers = {**reader._headers({}), "Last-Event-ID": "1"}
            with requests.get(stream_url, headers=headers, stream=True, timeout=30) as response:
                assert response.headers["Content-Type"].startswith("text/event-stream")
                for item in parse_sse(response.iter_lines()):
                    arrivals[item[2]] = time.monotonic()
                    received.append(item)

        reader_thread = threading.Thread(target=consume)
        reader_thread.start()
        deadline = time.monotonic() + 20
        while not any(event == "status" for _, event, _ in received) and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = time.monotonic()
        worker.api.post(url, {"attempt": attempt, "type": "log", "data": {"message": "live"}})
        while not any("live" in data for _, _, data in received) and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"attempt": attempt, "result": {"ok": True}})
        reader_thread.join(timeout=20)
        assert not reader_thread.is_alive()
    kinds = [(event_id, event) for event_id, event, _ in received]
    # Replay starts after Last-Event-ID 1: the output (2), the status, then live the log (3), succeeded, end.
    assert kinds[0] == ("2", "output")
    assert ("3", "log") in kinds
    statuses = [data for _, event, data in received if event == "status"]
    assert '"status":"running"' in statuses[0] and '"status":"succeeded"' in statuses[-1]
    assert kinds[-1] == (None, "end")
    live = next(data for _, _, data in received if "live" in data)
    assert arrivals[live] - sent < 5  # woken by NOTIFY, not by the 5 s recheck (a loose bound, not a benchmark)


def test_the_stream_and_the_events_see_exactly_the_tasks_task_detail_shows(make_api, orchestra, project_factory):
    from accounts.models import Role, RoleBinding
    from agents.tests.factories import OrchestraFactory

    in_project = make_api()
    RoleBinding.objects.create(user=in_project.user, role=Role.objects.get(name="viewer"), project=orchestra.project)
    readers = {"in-project": in_project, "global": make_api("viewer"), "nobody": make_api()}
    tasks = [TaskFactory(orchestra=orchestra), TaskFactory(orchestra=OrchestraFactory(project=project_factory()))]
    seen = set()
    for name, reader in readers.items():
        for task in tasks:
            detail = reader.get(f"/api/v1/tasks/{task.pk}/").status_code
            events = reader.get(f"/api/v1/tasks/{task.pk}/events/").status_code
            # An error is answered before the stream starts; a 200 stream is not read further here.
            stream = reader.get(f"/api/v1/tasks/{task.pk}/stream/").status_code
            assert events == stream == detail, (name, task.project_id, detail, events, stream)
            seen.add(detail)
    assert {200, 403} <= seen
