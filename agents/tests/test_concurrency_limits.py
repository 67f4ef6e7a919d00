"""Concurrency limits: the API, and claims that never run more than ``max_running`` tasks of a key."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from agents import services
from agents.flow_models import ConcurrencyLimit
from agents.models import Task
from agents.tests.conftest import Api
from agents.tests.factories import OrchestraFactory, UserFactory
from audit.models import AuditEvent


def _submit(orchestra, owner, n: int, key: str = "", **fields) -> list[Task]:
    return [
        services.task_submit(submitter=owner, orchestra=orchestra, kind="echo", concurrency_key=key, **fields)[0]
        for _ in range(n)
    ]


@pytest.mark.django_db
def test_it_creates_lists_changes_and_deletes_a_limit_audited(admin_api):
    r = admin_api.post("/api/v1/concurrency-limits/", {"key": "openai:gpt-4o", "max_running": 2})
    assert r.status_code == 201, r.content
    limit = r.json()
    assert limit["key"] == "openai:gpt-4o" and limit["max_running"] == 2
    assert admin_api.get("/api/v1/concurrency-limits/").json()["results"][0]["id"] == limit["id"]
    r = admin_api.patch(f"/api/v1/concurrency-limits/{limit['id']}/", {"max_running": 5})
    assert r.status_code == 200 and r.json()["max_running"] == 5
    assert admin_api.delete(f"/api/v1/concurrency-limits/{limit['id']}/").status_code == 204
    types = list(
        AuditEvent.objects.filter(event_type__startswith="concurrency_limit.").values_list("event_type", flat=True)
    )
    assert sorted(types) == ["concurrency_limit.created", "concurrency_limit.deleted", "concurrency_limit.updated"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "k", "max_running": 0}, "max_running"),
        ({"key": "k", "max_running": -3}, "max_running"),
        ({"key": "bad key!", "max_running": 1}, "key"),
        ({"key": "k", "max_running": 1, "extra": 1}, "extra"),
    ],
)
def test_it_refuses_bad_limits_naming_the_field(admin_api, body, field):
    r = admin_api.post("/api/v1/concurrency-limits/", body)
    assert r.status_code == 400
    assert field in r.json()["error"]["details"]
    assert not ConcurrencyLimit.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_second_limit_for_one_key(admin_api):
    assert admin_api.post("/api/v1/concurrency-limits/", {"key": "k", "max_running": 1}).status_code == 201
    r = admin_api.post("/api/v1/concurrency-limits/", {"key": "k", "max_running": 2})
    assert r.status_code == 400 and "key" in r.json()["error"]["details"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/v1/concurrency-limits/", {"key": "k", "max_running": 1}), ("/api/v1/budgets/", {"limit": "5"})],
)
def test_it_asks_for_a_project_when_the_default_one_is_gone(admin_api, path, body):
    # Found by schemathesis: after a fuzzed rename of the default project, omitting project was a 500.
    from accounts.models import Project

    Project.objects.filter(slug="default").update(slug="renamed")

    r = admin_api.post(path, body)

    assert r.status_code == 400
    assert list(r.json()["error"]["details"]) == ["project"]


@pytest.mark.django_db
def test_it_needs_orchestra_control_to_set_limits(make_api):
    viewer = make_api("viewer")
    assert viewer.post("/api/v1/concurrency-limits/", {"key": "k", "max_running": 1}).status_code == 403
    assert viewer.get("/api/v1/concurrency-limits/").status_code == 200


@pytest.mark.django_db
def test_it_holds_a_full_key_back_and_gives_the_freed_slot_to_the_next_claim(admin_api, make_agent, orchestra):
    orchestra.state = "running"
    orchestra.save()
    owner = admin_api.user
    admin_api.post("/api/v1/concurrency-limits/", {"key": "gpu", "max_running": 2})
    limited = _submit(orchestra, owner, 4, key="gpu")
    free = _submit(orchestra, owner, 2, key="")
    worker = make_agent(orchestra=orchestra)

    r = worker.api.post("/api/v1/agent/claim/", {"max_tasks": 10})
    claimed = {t["id"] for t in r.json()["tasks"]}
    # Two of the key (its limit), and the unlimited ones: a full key does not block other work.
    assert claimed == {limited[0].pk, limited[1].pk, free[0].pk, free[1].pk}
    assert worker.api.post("/api/v1/agent/claim/", {"max_tasks": 10}).json()["tasks"] == []

    done = worker.api.post(f"/api/v1/tasks/{limited[0].pk}/complete/", {"attempt": 1, "result": {}})
    assert done.status_code == 200
    again = worker.api.post("/api/v1/agent/claim/", {"max_tasks": 10}).json()["tasks"]
    assert [t["id"] for t in again] == [limited[2].pk]


@pytest.mark.django_db
def test_a_key_without_a_limit_is_unlimited(admin_api, make_agent, orchestra):
    orchestra.state = "running"
    orchestra.save()
    tasks = _submit(orchestra, admin_api.user, 5, key="nolimit")
    worker = make_agent(orchestra=orchestra)
    r = worker.api.post("/api/v1/agent/claim/", {"max_tasks": 10})
    assert {t["id"] for t in r.json()["tasks"]} == {t.pk for t in tasks}


CLAIMERS = 32
LIMIT = 3
TASKS = 120


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_32_concurrent_claimers_never_run_more_than_the_limit():
    owner = UserFactory(roles=["operator"])
    orchestra = OrchestraFactory(state="running")
    ConcurrencyLimit.objects.create(project=orchestra.project, key="openai:gpt-4o", max_running=LIMIT)
    apis = []
    for i in range(CLAIMERS):
        agent, raw = services.agent_create(owner=owner, name=f"claimer-{i}", capabilities=[])
        orchestra.agents.add(agent)
        apis.append(Api(raw))
    _submit(orchestra, owner, TASKS, key="openai:gpt-4o")
    lock = threading.Lock()
    holding = [0]
    peak = [0]
    sampled = [0]
    errors: list[str] = []
    done = threading.Event()

    def claimer(api: Api) -> None:
        try:
            idle = 0
            while idle < 50 and not done.is_set():
                tasks = api.post("/api/v1/agent/claim/", {"max_tasks": 2}).json()["tasks"]
                if not tasks:
                    idle += 1
                    time.sleep(0.005)
                    continue
                idle = 0
                with lock:
                    holding[0] += len(tasks)
                    peak[0] = max(peak[0], holding[0])
                time.sleep(0.002)  # hold the slot a moment, so overlapping claims would show
                for task in tasks:
                    with lock:
                        holding[0] -= 1
                    r = api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "result": {}})
                    if r.status_code != 200:
                        errors.append(f"complete {r.status_code}")
        except Exception as exc:  # surfaced by the assertion on errors
            errors.append(repr(exc))
        finally:
            connection.close()

    def sampler() -> None:
        try:
            while not done.is_set():
                n = Task.objects.filter(status="running", concurrency_key="openai:gpt-4o").count()
                sampled[0] = max(sampled[0], n)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(api,)) for api in apis]
    watcher = threading.Thread(target=sampler)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    done.set()
    watcher.join()

    assert errors == []
    assert Task.objects.filter(status="succeeded").count() == TASKS
    assert 1 <= peak[0] <= LIMIT
    assert sampled[0] <= LIMIT


@pytest.mark.django_db
def test_a_limit_counts_only_its_own_projects_tasks(admin_api, project_factory):
    alpha, beta = project_factory(slug="alpha"), project_factory(slug="beta")
    r = admin_api.post("/api/v1/concurrency-limits/", {"project": "alpha", "key": "gpu", "max_running": 1})
    assert r.status_code == 201 and r.json()["project"] == "alpha"
    # The same key in another project is another limit.
    r = admin_api.post("/api/v1/concurrency-limits/", {"project": "beta", "key": "gpu", "max_running": 1})
    assert r.status_code == 201
    listed = admin_api.get("/api/v1/concurrency-limits/", {"project": "beta"}).json()["results"]
    assert [x["project"] for x in listed] == ["beta"]
    owner = admin_api.user
    workers = {}
    for project in (alpha, beta):
        orchestra = OrchestraFactory(state="running", project=project)
        agent, raw = services.agent_create(owner=owner, name=f"w-{project.slug}", capabilities=[], project=project)
        orchestra.agents.add(agent)
        _submit(orchestra, owner, 2, key="gpu")
        workers[project.slug] = Api(raw)
    for worker in workers.values():
        assert len(worker.post("/api/v1/agent/claim/", {"max_tasks": 5}).json()["tasks"]) == 1
    r = admin_api.post("/api/v1/concurrency-limits/", {"project": "nope", "key": "gpu", "max_running": 1})
    assert r.status_code == 400 and "project" in r.json()["error"]["details"]
