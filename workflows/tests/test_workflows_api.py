from __future__ import annotations

import pytest

from agents.models import Task
from audit.models import AuditEvent
from workflows.models import WorkflowRun
from workflows.tests.helpers import claim, complete, fail, steps_by_key, submit

pytestmark = pytest.mark.django_db

DIAMOND = [
    {"key": "fetch", "kind": "http_get", "input": {"url": "x"}},
    {"key": "left", "kind": "echo", "depends_on": ["fetch"]},
    {"key": "right", "kind": "echo", "depends_on": ["fetch"]},
    {"key": "join", "kind": "echo", "depends_on": ["left", "right"]},
]


def test_it_runs_a_diamond_end_to_end_with_upstream_results(operator_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    r = submit(operator_api, orchestra, DIAMOND)
    assert r.status_code == 201, r.content
    run = r.json()
    assert run["status"] == "running"
    assert {s["key"]: s["status"] for s in run["steps"]} == {
        "fetch": "pending", "left": "blocked", "right": "blocked", "join": "blocked"
    }  # fmt: skip

    (fetch,) = claim(worker)
    assert fetch["step_key"] == "fetch" and fetch["workflow"] == run["id"] and fetch["upstream"] == {}
    assert complete(worker, fetch, {"body": "hi"}).status_code == 200
    branches = claim(worker)
    assert sorted(t["step_key"] for t in branches) == ["left", "right"]
    assert all(t["upstream"] == {"fetch": {"body": "hi"}} for t in branches)
    complete(worker, branches[0], "L")
    assert claim(worker) == []  # join still waits for the other branch
    assert steps_by_key(operator_api, run["id"])["join"]["status"] == "blocked"
    complete(worker, branches[1], "R")
    (join,) = claim(worker)
    assert join["upstream"] == {branches[0]["step_key"]: "L", branches[1]["step_key"]: "R"}
    complete(worker, join, "done")

    body = operator_api.get(f"/api/v1/workflows/{run['id']}/").json()
    assert body["status"] == "succeeded" and body["finished_at"]
    assert body["steps"][3]["depends_on"] == ["left", "right"] and body["steps"][3]["result"] == "done"
    assert AuditEvent.objects.filter(event_type="workflow.succeeded", resource_id=str(run["id"])).exists()
    task = operator_api.get(f"/api/v1/tasks/{join['id']}/").json()
    assert task["workflow"] == run["id"] and task["step_key"] == "join"


def test_a_failed_step_cancels_its_dependents_and_other_branches_run_on(operator_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    steps = [
        {"key": "a", "kind": "echo"},
        {"key": "b", "kind": "echo", "depends_on": ["a"]},
        {"key": "c", "kind": "echo", "depends_on": ["b"]},
        {"key": "other", "kind": "echo"},
    ]
    run_id = submit(operator_api, orchestra, steps).json()["id"]
    tasks = {t["step_key"]: t for t in claim(worker)}
    fail(worker, tasks["a"], "broken")
    steps_now = steps_by_key(operator_api, run_id)
    assert steps_now["b"]["status"] == steps_now["c"]["status"] == "cancelled"
    assert "'a'" in steps_now["c"]["error"] and "failed" in steps_now["c"]["error"]
    assert operator_api.get(f"/api/v1/workflows/{run_id}/").json()["status"] == "running"
    complete(worker, tasks["other"], 1)
    assert operator_api.get(f"/api/v1/workflows/{run_id}/").json()["status"] == "failed"

    r = operator_api.post(f"/api/v1/workflows/{run_id}/retry/")
    assert r.status_code == 200, r.content
    now = {s["key"]: s["status"] for s in r.json()["steps"]}
    assert now == {"a": "pending", "b": "blocked", "c": "blocked", "other": "succeeded"}
    for key in ["a", "b", "c"]:
        (task,) = claim(worker)
        assert task["step_key"] == key
        complete(worker, task, key)
    body = operator_api.get(f"/api/v1/workflows/{run_id}/").json()
    assert body["status"] == "succeeded"
    assert {s["key"]: s["result"] for s in body["steps"]}["other"] == 1


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"key": "a", "kind": "x", "depends_on": ["zz"]}], "Step 'a' depends on unknown step 'zz'."),
        ([{"key": "a", "kind": "x"}, {"key": "a", "kind": "y"}], "Step 'a': the key is used by more than one step."),
        (
            [{"key": "a", "kind": "x", "depends_on": ["b"]}, {"key": "b", "kind": "x", "depends_on": ["a"]}],
            "Steps form a cycle: a -> b -> a.",
        ),
        ([{"key": f"s{i}", "kind": "x"} for i in range(4)], "At most 3 steps are allowed"),
    ],
)
def test_it_refuses_a_bad_dag_naming_the_step_and_creates_nothing(operator_api, orchestra, settings, steps, message):
    settings.SYMPHONY_WORKFLOW_MAX_STEPS = 3
    r = submit(operator_api, orchestra, steps)
    assert r.status_code == 400, r.content
    assert message in r.json()["error"]["details"]["steps"][0]
    assert not WorkflowRun.objects.exists() and not Task.objects.exists()


def test_cancel_tells_running_steps_through_their_lease(operator_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    run_id = submit(operator_api, orchestra, DIAMOND).json()["id"]
    (fetch,) = claim(worker)
    r = operator_api.post(f"/api/v1/workflows/{run_id}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert {s["status"] for s in r.json()["steps"]} == {"cancelled"}
    late = complete(worker, fetch, 1)
    assert late.status_code == 409 and late.json()["error"]["code"] == "task_cancelled"
    assert worker.api.post("/api/v1/agent/heartbeat/").json()["cancelled_tasks"] == [fetch["id"]]
    assert operator_api.post(f"/api/v1/workflows/{run_id}/cancel/").status_code == 409
    # Retry after a cancel re-runs everything that did not succeed.
    assert operator_api.post(f"/api/v1/workflows/{run_id}/retry/").json()["status"] == "running"
    assert [t["step_key"] for t in claim(worker)] == ["fetch"]


def test_it_filters_runs_by_status_and_name(operator_api, orchestra):
    submit(operator_api, orchestra, [{"key": "a", "kind": "x"}], name="nightly build")
    other = submit(operator_api, orchestra, [{"key": "a", "kind": "x"}], name="other").json()["id"]
    operator_api.post(f"/api/v1/workflows/{other}/cancel/")
    assert [r["name"] for r in operator_api.get("/api/v1/workflows/", {"status": "running"}).json()["results"]] == [
        "nightly build"
    ]
    assert [r["id"] for r in operator_api.get("/api/v1/workflows/", {"name": "oth"}).json()["results"]] == [other]


def test_a_repeated_idempotency_key_returns_the_same_run(operator_api, orchestra):
    first = submit(operator_api, orchestra, [{"key": "a", "kind": "x"}], idempotency_key="k1")
    again = submit(operator_api, orchestra, [{"key": "a", "kind": "x"}], idempotency_key="k1")
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
