"""Live task streams (server-sent events) under the real ASGI server, uvicorn, as production runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from agents.tests.factories import TaskFactory
from tests.servers import ROOT, app_env, free_port, running, wait_for

# serialized_rollback: the flush after a transactional test would leave the next test without the seeded data.
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.slow]


def parse_sse(lines: Any, until: str = "end") -> Iterator[tuple[str | None, str, str]]:
    """(id, event, data) of each event as it arrives, until ``until`` (comments and ``retry:`` skipped)."""
    current: dict[str, str] = {}
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if line == "":
            if "data" in current:
                yield current.get("id"), current.get("event", "message"), current["data"]
                if current.get("event") == until:
                    return
            current = {}
            continue
        if line.startswith(":"):
            current.setdefault("comment", line)
            continue
        field, _, value = line.partition(": ")
        current[field] = value


def uvicorn_env(tmp_path: Path) -> dict[str, str]:
    from django.conf import settings

    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = app_env(tmp_path, DATABASE_URL=url, SYMPHONY_STREAM_HEARTBEAT_SECONDS="0.5")
    if os.environ.get("REDIS_URL"):
        # The test's own cache namespace, as an install's processes share one: what the test
        # invalidates (a key revoked through a service here) the server must see.
        env["CACHE_KEY_PREFIX"] = settings.CACHES["default"]["KEY_PREFIX"]
    return env


def uvicorn(tmp_path: Path, env: dict[str, str]):
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "symphony.asgi:application", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log"]  # fmt: skip
    return port, running(command, env=env, log=tmp_path / "uvicorn.log")


#: Threads (each with its own database connection) of the ASGI process's shared pool: asyncio's
#: default executor, which ``sync_to_async(thread_sensitive=False)`` runs on.
POOL = min(32, (os.cpu_count() or 1) + 4)
#: What that process may hold open besides its pool: the LISTEN connection, the audit sealer's, and
#: one being replaced.
OWN_CONNECTIONS = 3


def database_backends() -> int:
    """Connections to the test database now, from every process."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


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
        assert denied.status_code == 404  # bound to no project: the task is invisible, as on its detail
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
    from agents.tests.factories import OrchestraFactory, UserFactory

    member = UserFactory(username="project-member")
    RoleBinding.objects.create(user=member, role=Role.objects.get(name="viewer"), project=orchestra.project)
    in_project = make_api(user=member)
    readers = {"in-project": in_project, "global": make_api("viewer"), "nobody": make_api()}
    tasks = {"mine": TaskFactory(orchestra=orchestra),
             "theirs": TaskFactory(orchestra=OrchestraFactory(project=project_factory()))}  # fmt: skip
    answers = {}
    for name, reader in readers.items():
        for which, task in tasks.items():
            detail = reader.get(f"/api/v1/tasks/{task.pk}/").status_code
            events = reader.get(f"/api/v1/tasks/{task.pk}/events/").status_code
            # An error is answered before the stream starts; a 200 stream is not read further here.
            stream = reader.get(f"/api/v1/tasks/{task.pk}/stream/").status_code
            assert events == stream == detail, (name, which, detail, events, stream)
            answers[name, which] = detail
    assert answers == {
        ("in-project", "mine"): 200, ("in-project", "theirs"): 404,  # another project's task does not exist
        ("global", "mine"): 200, ("global", "theirs"): 200,
        ("nobody", "mine"): 404, ("nobody", "theirs"): 404,  # bound to no project, sees no task
    }  # fmt: skip


SETUP = """
import json
from accounts.models import Role, User
from accounts.services import api_key_create
from agents import services
from agents.models import Orchestra
owner = User.objects.create(username="owner", is_superuser=True)
viewer = User.objects.create(username="viewer")
viewer.roles.set(Role.objects.filter(name="viewer"))
_, key = api_key_create(owner=viewer, name="watch")
agent, _ = services.agent_create(owner=owner, name="worker", capabilities=[])
orchestra = Orchestra.objects.create(name="main", state=Orchestra.State.RUNNING)
orchestra.agents.add(agent)
task, _ = services.task_submit(submitter=owner, kind="x", orchestra=orchestra)
[claimed] = services.task_claim(agent=agent)
print(json.dumps({"key": key, "task": task.pk, "attempt": claimed.last_attempt}))
"""

POST = """
from agents import services
from agents.models import Agent
agent = Agent.objects.get(name="worker")
task_id, attempt, what = {task_id}, {attempt}, {what!r}
if what == "complete":
    services.task_complete(task_id=task_id, agent=agent, attempt=attempt, result={{"ok": True}})
else:
    services.task_event_append(task_id=task_id, agent=agent, attempt=attempt,
                               events=[{{"type": "log", "data": {{"message": what}}}}])
"""


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_on_sqlite_a_stream_sees_what_another_process_writes_through_the_poller(tmp_path):
    """The embedded default has no notifications: the stream process polls the shared database file."""
    # Heartbeat and recheck far above the test's waits: only the poller can wake the stream in time.
    env = app_env(tmp_path, SYMPHONY_STREAM_POLL_SECONDS="0.2", SYMPHONY_STREAM_HEARTBEAT_SECONDS="120",
                  SYMPHONY_STREAM_RECHECK_SECONDS="120")  # fmt: skip
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    manage(env, "migrate", "--noinput")
    setup = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
    task_id, attempt = setup["task"], setup["attempt"]
    port, server = uvicorn(tmp_path, env)
    received: list[tuple[str | None, str, str]] = []
    with server as process:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health/live", timeout=60, process=process) == 200

        def consume() -> None:
            headers = {"Authorization": f"Bearer {setup['key']}"}
            with requests.get(f"{base}/api/v1/tasks/{task_id}/stream/", headers=headers, stream=True,
                              timeout=30) as response:  # fmt: skip
                assert response.status_code == 200
                for item in parse_sse(response.iter_lines()):
                    received.append(item)

        reader = threading.Thread(target=consume)
        reader.start()
        for what, shown in (("from another process", "status"), ("complete", "log")):
            # Each write waits until the stream showed the step before: the log line is woken by the
            # poller while the task runs, not replayed at the end.
            deadline = time.monotonic() + 20
            while not any(event == shown for _, event, _ in received) and time.monotonic() < deadline:
                time.sleep(0.05)
            if what == "complete":
                log_shown_while_running = any(event == "log" for _, event, _ in received)
            manage(env, "shell", "-c", POST.format(task_id=task_id, attempt=attempt, what=what))
        reader.join(timeout=30)
        assert not reader.is_alive()
    kinds = [(event_id, event) for event_id, event, _ in received]
    assert log_shown_while_running  # woken by the poller, not replayed once the task had ended
    assert ("1", "log") in kinds
    assert "from another process" in next(data for _, event, data in received if event == "log")
    assert '"status":"succeeded"' in [data for _, event, data in received if event == "status"][-1]
    assert kinds[-1] == (None, "end")


@pytest.mark.postgres
def test_open_streams_share_a_few_database_connections(make_agent, orchestra, tmp_path, make_api):
    """More streams than the pool has threads, each with a key the process has never seen (its
    middleware reads the key from the database on the request's own thread): while they are open,
    the process holds its pool's connections and its own, not one per stream."""
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    [claimed] = worker.api.post("/api/v1/agent/claim/", {}).json()["tasks"]
    readers = [make_api("viewer") for _ in range(POOL + 14)]
    port, server = uvicorn(tmp_path, uvicorn_env(tmp_path))
    with server as process:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health/live", timeout=60, process=process) == 200
        before = database_backends()
        statuses: list[str] = []

        def read(reader: Any) -> None:
            url = f"{base}/api/v1/tasks/{task.pk}/stream/"
            with requests.get(url, headers=reader._headers({}), stream=True, timeout=60) as response:
                for _, event, data in parse_sse(response.iter_lines()):
                    if event == "status":
                        statuses.append(data)

        threads = [threading.Thread(target=read, args=(reader,), daemon=True) for reader in readers]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(statuses) < len(readers) and time.monotonic() < deadline:  # every stream is open
            time.sleep(0.05)
        assert len(statuses) == len(readers)
        opened = database_backends() - before
        body = {"attempt": claimed["attempt"], "result": {"ok": True}}
        worker.api.post(f"/api/v1/tasks/{task.pk}/complete/", body)  # ends every stream
        for thread in threads:
            thread.join(timeout=30)
    assert opened <= POOL + OWN_CONNECTIONS, f"{opened} connections for {len(readers)} open streams"


class Watcher(threading.Thread):
    """Reads one stream on its own thread: every (id, event, data) in ``received``, until it ends."""

    def __init__(self, url: str, **request: Any) -> None:
        super().__init__(daemon=True)
        self.url, self.request = url, request
        self.received: list[tuple[str | None, str, str]] = []
        self.status = 0
        self.start()

    def run(self) -> None:
        with requests.get(self.url, stream=True, timeout=30, **self.request) as response:
            self.status = response.status_code
            if response.status_code != 200:
                self.received.append((None, "refused", response.text))
                return
            self.received.extend(parse_sse(response.iter_lines(), until="denied"))

    def following(self) -> None:
        """Wait until the stream has replayed and follows live (its first ``status`` event is out)."""
        deadline = time.monotonic() + 20
        while not any(event == "status" for _, event, _ in self.received):
            assert time.monotonic() < deadline and self.is_alive(), self.received
            time.sleep(0.05)

    def ended(self) -> list[tuple[str | None, str, str]]:
        self.join(timeout=30)
        assert not self.is_alive(), "the stream did not end"
        return self.received


def _revoke_its_key(reader: Any) -> None:
    from accounts.models import ApiKey
    from accounts.services import api_key_revoke

    api_key_revoke(actor=None, key=ApiKey.objects.get(prefix=reader.key.split("_")[1]))


def _take_its_role(reader: Any) -> None:
    reader.user.roles.clear()  # the permission caches are dropped on commit (signals)


@pytest.mark.postgres
@pytest.mark.redis  # the server sees the test's invalidations through the cache they share
@pytest.mark.parametrize(
    ("change", "status", "code"),
    [(_revoke_its_key, 401, "api_key_revoked"), (_take_its_role, 404, "not_found")],
    ids=["key revoked", "role taken"],
)
def test_a_stream_ends_with_denied_once_its_viewer_may_no_longer_see_it(
    make_agent, orchestra, tmp_path, make_api, change, status, code
):
    """The checks a stream was opened with run again while it lasts: the first event after the
    viewer lost its right is not sent; a ``denied`` event says why, as a new request would be told."""
    worker = make_agent(orchestra=orchestra)
    reader = make_api("viewer")
    task = TaskFactory(orchestra=orchestra)
    [claimed] = worker.api.post("/api/v1/agent/claim/", {}).json()["tasks"]
    events = f"/api/v1/tasks/{task.pk}/events/"
    env = uvicorn_env(tmp_path)
    env["SYMPHONY_STREAM_ACCESS_RECHECK_SECONDS"] = "600"  # only the generation's move can end it in time
    port, server = uvicorn(tmp_path, env)
    with server as process:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health/live", timeout=60, process=process) == 200
        watcher = Watcher(f"{base}/api/v1/tasks/{task.pk}/stream/", headers=reader._headers({}))
        watcher.following()
        worker.api.post(events, {"attempt": claimed["attempt"], "type": "log", "data": {"message": "before"}})
        change(reader)
        worker.api.post(events, {"attempt": claimed["attempt"], "type": "log", "data": {"message": "after"}})
        received = watcher.ended()
    assert [event for _, event, _ in received][-1] == "denied"
    denied = json.loads(received[-1][2])
    assert (denied["status"], denied["error"]["code"]) == (status, code)
    assert "after" not in " ".join(data for _, _, data in received)


@pytest.mark.postgres
def test_a_session_stream_ends_with_denied_once_the_session_is_logged_out(make_agent, orchestra, tmp_path, make_user):
    """A logout moves no permission generation: the stream's periodic check ends it."""
    from django.conf import settings
    from django.test import Client

    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    worker.api.post("/api/v1/agent/claim/", {})
    browser = Client()
    browser.force_login(make_user("viewer"))
    cookie = {"sessionid": browser.cookies["sessionid"].value}
    env = uvicorn_env(tmp_path)
    env["SECRET_KEY"] = settings.SECRET_KEY  # a session's user is verified with the install's key
    env["SYMPHONY_STREAM_ACCESS_RECHECK_SECONDS"] = "0.5"
    port, server = uvicorn(tmp_path, env)
    with server as process:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health/live", timeout=60, process=process) == 200
        watcher = Watcher(f"{base}/api/v1/tasks/{task.pk}/stream/", cookies=cookie)
        watcher.following()
        time.sleep(1.5)  # a few periodic checks: a logged-in session passes them and stays open
        assert watcher.is_alive()
        browser.logout()
        received = watcher.ended()
    denied = json.loads(received[-1][2])
    assert received[-1][1] == "denied" and denied["status"] in (401, 403), received[-1]
    assert denied["error"]["code"] == "not_authenticated"
