"""Claims that wait for work (``wait_seconds``) under the real ASGI server, uvicorn, as production runs them.

Real HTTP through the real middleware; PostgreSQL for the notifications (the SQLite test polls).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from agents.models import Task
from agents.tests.factories import OrchestraFactory, TaskFactory
from agents.tests.test_streams import OWN_CONNECTIONS, POOL, database_backends, manage, uvicorn, uvicorn_env
from tests.servers import ROOT, app_env, running, wait_for

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.slow]

CLAIM = "/api/v1/agent/claim/"


def _postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")


def waiting(base: str) -> int:
    """How many claims the ASGI process holds now (its /metrics, allowed from loopback)."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    match = re.search(r"^symphony_claims_waiting(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


def until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


class Claim(threading.Thread):
    """A claim sent on its own thread; ``answer`` and ``took`` (seconds) once it returns."""

    def __init__(self, base: str, key: str, **body: Any) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.body = base + CLAIM, key, body
        self.answer: requests.Response | None = None
        self.took = 0.0
        self.start()

    def run(self) -> None:
        started = time.monotonic()
        wait = self.body.get("wait_seconds", 0)
        self.answer = requests.post(self.url, json=self.body, headers={"Authorization": f"Bearer {self.key}"},
                                    timeout=wait + 30)  # fmt: skip
        self.took = time.monotonic() - started

    def tasks(self) -> list[dict[str, Any]]:
        self.join(timeout=60)
        assert self.answer is not None and self.answer.status_code == 200, self.answer and self.answer.text
        return self.answer.json()["tasks"]


@pytest.fixture
def asgi(tmp_path: Path):
    """The ASGI process on the test database; yields its base URL."""
    _postgres()
    env = uvicorn_env(tmp_path)
    env.pop("PROMETHEUS_MULTIPROC_DIR")  # as scripts/run.sh starts it: the process's own metrics
    port, server = uvicorn(tmp_path, env)
    with server as process:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health/live", timeout=60, process=process) == 200
        yield base


@pytest.mark.postgres
def test_a_waiting_claim_gets_a_task_submitted_while_it_waits_at_once(asgi, make_agent, orchestra, operator_api):
    worker = make_agent(orchestra=orchestra)
    claim = Claim(asgi, worker.key, wait_seconds=25)
    until(lambda: waiting(asgi) == 1)
    body = {"orchestra": orchestra.pk, "kind": "echo", "input": {"n": 1}}
    submitted = operator_api.post("/api/v1/tasks/", body).json()["id"]
    [task] = claim.tasks()
    assert task["id"] == submitted and task["attempt"] == 1
    assert claim.answer.headers["X-Claim-Wait-Seconds"] == "25"
    assert claim.took < 15  # woken by the notification, not by the end of the wait (a loose bound)
    assert Task.objects.get(pk=submitted).agent_id == worker.agent.pk
    assert waiting(asgi) == 0


@pytest.mark.postgres
def test_a_waiting_claim_answers_no_tasks_when_the_time_is_up(asgi, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    claim = Claim(asgi, worker.key, wait_seconds=1)
    assert claim.tasks() == []
    assert claim.took >= 1
    assert claim.answer.headers["X-Claim-Wait-Seconds"] == "1"
    assert claim.answer.headers["X-Request-ID"] and "X-RateLimit-Limit" in claim.answer.headers


@pytest.mark.postgres
def test_a_claimable_task_is_taken_at_once_and_a_claim_without_wait_is_the_sync_one(asgi, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    first, second = TaskFactory(orchestra=orchestra), TaskFactory(orchestra=orchestra)
    claim = Claim(asgi, worker.key, wait_seconds=25)
    assert [t["id"] for t in claim.tasks()] == [first.pk]
    assert claim.took < 15
    plain = Claim(asgi, worker.key, max_tasks=5)
    assert [t["id"] for t in plain.tasks()] == [second.pk]
    assert "X-Claim-Wait-Seconds" not in plain.answer.headers


@pytest.mark.postgres
def test_two_waiters_and_one_task_exactly_one_gets_it(asgi, make_agent, orchestra, operator_api):
    one, two = make_agent(orchestra=orchestra), make_agent(orchestra=orchestra)
    claims = [Claim(asgi, one.key, wait_seconds=4), Claim(asgi, two.key, wait_seconds=4)]
    until(lambda: waiting(asgi) == 2)
    operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo", "input": {}})
    got = [claim.tasks() for claim in claims]
    assert sorted(len(tasks) for tasks in got) == [0, 1]
    loser = claims[[len(tasks) for tasks in got].index(0)]
    assert loser.took >= 4  # it kept waiting after the other took the task, until its own time was up


@pytest.mark.postgres
def test_held_claims_share_a_few_database_connections(asgi, make_agent, orchestra, operator_api):
    """More held claims than the pool has threads, each with a key the process has never seen (its
    middleware reads the key from the database on the request's own thread): while they wait, the
    process holds its pool's connections and its own, not one per claim."""
    before = database_backends()
    agents = [make_agent(orchestra=orchestra) for _ in range(POOL + 14)]
    claims = [Claim(asgi, agent.key, wait_seconds=20) for agent in agents]
    until(lambda: waiting(asgi) == len(agents))
    opened = database_backends() - before
    for n in range(len(agents)):
        operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo", "input": {"n": n}})
    assert sorted(len(claim.tasks()) for claim in claims) == [1] * len(agents)
    assert opened <= POOL + OWN_CONNECTIONS, f"{opened} connections for {len(agents)} held claims"


def _revoke_the_key(worker: Any) -> None:
    from accounts.services import api_key_revoke

    api_key_revoke(actor=None, key=worker.agent.api_key)


def _delete_the_agent(worker: Any) -> None:
    from agents import services

    services.agent_delete(agent=worker.agent, actor=None)


def _deactivate_the_owner(worker: Any) -> None:
    owner = worker.agent.owner
    owner.is_active = False
    owner.save(update_fields=["is_active"])  # the permission caches are dropped on commit (signals)


@pytest.mark.postgres
@pytest.mark.redis  # the server sees the test's invalidations through the cache they share
@pytest.mark.parametrize(
    ("change", "code"),
    [
        (_revoke_the_key, "api_key_revoked"),
        (_delete_the_agent, "api_key_revoked"),
        (_deactivate_the_owner, "api_key_owner_inactive"),
    ],
    ids=["key revoked", "agent deleted", "owner deactivated"],
)
def test_a_claim_held_past_the_end_of_its_key_takes_nothing_and_is_refused(
    asgi, make_agent, orchestra, operator_api, change, code
):
    """The key was checked when the claim came in; a task arriving after its revocation (or its
    agent's deletion, or its owner's deactivation) must not be leased to it: the wait ends with the
    401 the next request would get, and the task stays queued for another agent."""
    worker = make_agent(orchestra=orchestra)
    claim = Claim(asgi, worker.key, wait_seconds=25)
    until(lambda: waiting(asgi) == 1)
    change(worker)
    submitted = operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}).json()["id"]
    claim.join(timeout=60)
    assert claim.answer is not None and claim.answer.status_code == 401, claim.answer and claim.answer.text
    assert claim.answer.json()["error"]["code"] == code
    assert claim.took < 15  # refused when woken, not at the end of the wait
    task = Task.objects.get(pk=submitted)
    assert (task.status, task.agent_id, task.attempts) == (Task.Status.PENDING, None, 0)


@pytest.mark.postgres
def test_a_waiter_is_never_given_another_projects_task(asgi, make_agent, orchestra, operator_api, project_factory):
    worker = make_agent(orchestra=orchestra)
    elsewhere = OrchestraFactory(name="other", project=project_factory())
    claim = Claim(asgi, worker.key, wait_seconds=2)
    until(lambda: waiting(asgi) == 1)
    from agents import services

    foreign, _ = services.task_submit(submitter=worker.agent.owner, kind="x", orchestra=elsewhere)  # notifies
    assert claim.tasks() == []
    assert Task.objects.get(pk=foreign.pk).status == Task.Status.PENDING


@pytest.mark.postgres
def test_only_agent_keys_may_wait_and_a_bad_wait_is_a_400_naming_the_field(asgi, make_agent, orchestra, make_api):
    worker = make_agent(orchestra=orchestra)
    operator = make_api("operator")
    url = asgi + CLAIM
    # Refused before any wait: the request's own timeout is far below the wait asked for.
    denied = requests.post(url, json={"wait_seconds": 30}, headers=operator._headers({}), timeout=10)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "agent_key_required"
    assert requests.post(url, json={"wait_seconds": 30}, timeout=10).status_code == 401
    assert requests.get(url, headers=worker.api._headers({}), timeout=10).status_code == 405
    for bad in (-1, 31, "soon", 1.5):
        answer = requests.post(url, json={"wait_seconds": bad}, headers=worker.api._headers({}), timeout=10)
        assert answer.status_code == 400, (bad, answer.text)
        assert "wait_seconds" in answer.json()["error"]["details"], bad
    # The sync API (gunicorn) refuses the same values the same way.
    for bad in (-1, 31, "soon"):
        answer = worker.api.post(CLAIM, {"wait_seconds": bad})
        assert answer.status_code == 400 and "wait_seconds" in answer.json()["error"]["details"]


def test_a_sync_worker_never_waits_and_says_so(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    answer = worker.api.post(CLAIM, {"wait_seconds": 30})
    assert answer.status_code == 200 and answer.json()["tasks"] == []
    assert answer["X-Claim-Wait-Seconds"] == "0"  # did not wait: the client polls at its own interval
    TaskFactory(orchestra=orchestra)
    answer = worker.api.post(CLAIM, {"wait_seconds": 30})
    assert len(answer.json()["tasks"]) == 1


@pytest.mark.postgres
def test_a_client_that_goes_away_releases_its_waiter(asgi, make_agent, orchestra, operator_api):
    gone, stays = make_agent(orchestra=orchestra), make_agent(orchestra=orchestra)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(asgi + CLAIM, json={"wait_seconds": 30}, headers=gone.api._headers({}), timeout=1)
    until(lambda: waiting(asgi) == 0)
    # Had the first waiter stayed (it came first), the one wake-up would have been its.
    claim = Claim(asgi, stays.key, wait_seconds=25)
    until(lambda: waiting(asgi) == 1)
    submitted = operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}).json()["id"]
    assert [t["id"] for t in claim.tasks()] == [submitted]


@pytest.mark.postgres
def test_a_waiter_is_woken_by_a_retryable_failure_and_by_its_orchestra_starting(
    asgi, make_agent, orchestra, operator_api
):
    holder, waiter = make_agent(orchestra=orchestra), make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    [claimed] = holder.api.post(CLAIM, {}).json()["tasks"]
    claim = Claim(asgi, waiter.key, wait_seconds=25)
    until(lambda: waiting(asgi) == 1)
    body = {"attempt": claimed["attempt"], "error": "rate limited", "retryable": True}
    assert holder.api.post(f"/api/v1/tasks/{task.pk}/fail/", body).status_code == 200
    assert [t["id"] for t in claim.tasks()] == [task.pk]
    assert claim.took < 15
    assert operator_api.post(f"/api/v1/orchestras/{orchestra.pk}/pause/", {}).status_code == 200
    queued = TaskFactory(orchestra=orchestra)
    claim = Claim(asgi, waiter.key, wait_seconds=25)
    until(lambda: waiting(asgi) == 1)
    assert operator_api.post(f"/api/v1/orchestras/{orchestra.pk}/resume/", {}).status_code == 200
    assert [t["id"] for t in claim.tasks()] == [queued.pk]
    assert claim.took < 15


@pytest.mark.postgres
def test_the_worker_long_polls_by_default_and_runs_a_task_submitted_while_it_waits(
    asgi, make_agent, orchestra, operator_api, live_server, tmp_path
):
    """As ``make run`` starts it: the API on gunicorn's port (here the live server), claims on the ASGI port."""
    worker = make_agent(orchestra=orchestra, capabilities=["echo"])
    env = app_env(tmp_path, SYMPHONY_AGENT_KEY=worker.key, PYTHONPATH=str(ROOT / "clients" / "symphony-agent" / "src"))
    command = [*_python(), "manage.py", "run_agent", "--url", live_server.url, "--claim-url", asgi, "--demo",
               "--poll-interval", "30"]  # fmt: skip
    with running(command, env=env, log=tmp_path / "worker.log"):
        until(lambda: waiting(asgi) == 1, timeout=60)  # the worker's claim is held, not polled
        body = {"orchestra": orchestra.pk, "kind": "echo", "input": {"text": "hi"}, "required_capabilities": ["echo"]}
        submitted = operator_api.post("/api/v1/tasks/", body).json()["id"]
        # Polling every 30 s would not get there within the bound; the held claim does.
        until(lambda: Task.objects.get(pk=submitted).status == Task.Status.SUCCEEDED, timeout=20)
    assert Task.objects.get(pk=submitted).result == {"text": "hi"}


def _python() -> list[str]:
    import sys

    return [sys.executable]


SETUP = """
import json
from accounts.models import User
from agents import services
from agents.models import Orchestra
owner = User.objects.create(username="owner", is_superuser=True)
agent, key = services.agent_create(owner=owner, name="worker", capabilities=[])
orchestra = Orchestra.objects.create(name="main", state=Orchestra.State.RUNNING)
orchestra.agents.add(agent)
print(json.dumps({"key": key, "orchestra": orchestra.pk}))
"""

SUBMIT = """
from accounts.models import User
from agents import services
from agents.models import Orchestra
task, _ = services.task_submit(submitter=User.objects.get(username="owner"), kind="x",
                               orchestra=Orchestra.objects.get(name="main"))
print(task.pk)
"""


def test_on_sqlite_a_waiting_claim_is_woken_by_the_poller(tmp_path):
    """The embedded default has no notifications: the ASGI process polls the shared database file."""
    env = app_env(tmp_path, SYMPHONY_STREAM_POLL_SECONDS="0.2", SYMPHONY_STREAM_RECHECK_SECONDS="120")
    for name in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    manage(env, "migrate", "--noinput")
    setup = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
    port, server = uvicorn(tmp_path, env)
    with server as process:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health/live", timeout=60, process=process) == 200
        claim = Claim(base, setup["key"], wait_seconds=25)
        until(lambda: waiting(base) == 1)
        submitted = int(manage(env, "shell", "-c", SUBMIT).strip().splitlines()[-1])  # another process
        assert [t["id"] for t in claim.tasks()] == [submitted]
        assert claim.took < 15
