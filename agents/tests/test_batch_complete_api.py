"""POST /api/v1/agent/complete/: several completions in one request, each fenced by its attempt."""

from __future__ import annotations

import pytest

import audit
from agents.models import Task
from agents.tests.factories import TaskFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

URL = "/api/v1/agent/complete/"


def claim(worker, max_tasks=1):
    r = worker.api.post("/api/v1/agent/claim/", {"max_tasks": max_tasks})
    assert r.status_code == 200, r.json()
    return r.json()["tasks"]


def entry(task, **extra):
    return {"task": task["id"], "attempt": task["attempt"], "result": {"n": task["id"]}, **extra}


def test_it_completes_every_entry_once_with_its_result_and_event(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    TaskFactory.create_batch(3, orchestra=orchestra)
    tasks = claim(worker, max_tasks=3)
    r = worker.api.post(URL, {"results": [entry(t) for t in tasks]})
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["completed"] == 3
    assert [(a["task"], a["ok"], a["status_code"], a["task_status"]) for a in body["results"]] == [
        (t["id"], True, 200, "succeeded") for t in tasks
    ]
    for t in tasks:
        task = Task.objects.get(pk=t["id"])
        assert (task.status, task.result) == ("succeeded", {"n": t["id"]})
        assert AuditEvent.objects.filter(event_type="task.completed", resource_id=str(t["id"])).count() == 1
        assert task.attempt_set.get(number=1).outcome == "succeeded"
    # Sent again, each is a lease that moved on: nothing completes twice.
    again = worker.api.post(URL, {"results": [entry(t) for t in tasks]}).json()
    assert again["completed"] == 0
    assert {(a["status_code"], a["error"]["code"]) for a in again["results"]} == {(409, "lease_lost")}
    assert AuditEvent.objects.filter(event_type="task.completed").count() == 3


def test_it_stores_each_result_as_sent_and_a_missing_or_null_one_as_no_result(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    TaskFactory.create_batch(4, orchestra=orchestra)
    sent, missing, null, empty = claim(worker, max_tasks=4)
    result = {"text": 'a "quoted" \\ back\\slash,\nline, tab\t, 😀', "list": [1, 2.5, None, True], "{": "}"}
    entries = [entry(sent, result=result), entry(missing), entry(null, result=None), entry(empty, result={})]
    del entries[1]["result"]
    r = worker.api.post(URL, {"results": entries})
    assert r.status_code == 200 and r.json()["completed"] == 4, r.json()
    assert Task.objects.get(pk=sent["id"]).result == result
    assert Task.objects.get(pk=empty["id"]).result == {}
    # No result is SQL NULL, as a single completion stores it, not JSON null.
    assert set(Task.objects.filter(result__isnull=True).values_list("pk", flat=True)) == {missing["id"], null["id"]}


def test_it_answers_a_stale_entry_alone_and_completes_the_others(
    make_agent, orchestra, django_capture_on_commit_callbacks
):
    worker, other = make_agent(orchestra=orchestra), make_agent(orchestra=orchestra)
    TaskFactory.create_batch(3, orchestra=orchestra)
    mine = claim(worker, max_tasks=2)
    [theirs] = claim(other)
    results = [
        entry(mine[0]),
        entry(mine[1], attempt=mine[1]["attempt"] + 1),
        entry(theirs),
        {"task": 10**9, "attempt": 1},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        answers = worker.api.post(URL, {"results": results}).json()["results"]
    audit.seal_now()  # the commit woke the background sealer, which cannot see this test's transaction
    assert [(a["ok"], a["status_code"]) for a in answers] == [(True, 200), (False, 409), (False, 403), (False, 404)]
    assert answers[1]["error"]["code"] == "lease_lost"
    assert answers[2]["error"]["code"] == "not_task_holder"
    assert Task.objects.get(pk=mine[0]["id"]).status == "succeeded"
    assert Task.objects.get(pk=mine[1]["id"]).status == "running"  # its holder can still complete it
    assert Task.objects.get(pk=theirs["id"]).status == "running"
    assert AuditEvent.objects.filter(event_type="task.completed").count() == 1
    assert AuditEvent.objects.filter(chain_seq__isnull=True).count() == 0


def test_it_keeps_the_lease_of_an_oversize_result_and_completes_the_rest(make_agent, orchestra, settings):
    settings.SYMPHONY_TASK_MAX_RESULT_BYTES = 100
    worker = make_agent(orchestra=orchestra)
    TaskFactory.create_batch(2, orchestra=orchestra)
    big, small = claim(worker, max_tasks=2)
    answers = worker.api.post(URL, {"results": [entry(big, result="x" * 500), entry(small)]}).json()["results"]
    assert [(a["ok"], a["status_code"]) for a in answers] == [(False, 413), (True, 200)]
    assert Task.objects.get(pk=big["id"]).status == "running"


def test_it_answers_a_mixed_batch_in_order(make_agent, orchestra):
    """Plain entries are completed together, the others one by one; the answers keep the request's order."""
    from agents.models import UsageRecord

    worker = make_agent(orchestra=orchestra)
    TaskFactory.create_batch(3, orchestra=orchestra)
    plain, metered, empty = claim(worker, max_tasks=3)
    usage = [{"model": "gpt-x", "input_tokens": 10, "output_tokens": 5, "cost": "0.01", "currency": "USD"}]
    results = [entry(metered, usage=usage), entry(plain), entry(plain), {"task": empty["id"], "attempt": 1}]
    answers = worker.api.post(URL, {"results": results}).json()["results"]
    assert [(a["task"], a["status_code"]) for a in answers] == [
        (metered["id"], 200), (plain["id"], 200), (plain["id"], 409), (empty["id"], 200)
    ]  # fmt: skip
    assert UsageRecord.objects.filter(task_id=metered["id"]).count() == 1
    assert Task.objects.filter(pk=empty["id"], status="succeeded", result__isnull=True).exists()  # SQL NULL
    assert AuditEvent.objects.filter(event_type="task.completed").count() == 3


@pytest.mark.parametrize(
    ("results", "field"),
    [
        ("not a list", "results"),
        ([], "results"),
        ([{"task": 1, "attempt": 1}, {"task": 2}], "results[1].attempt"),
        ([{"task": 1, "attempt": 1}, {"task": 2, "attempt": 1}, {"task": 3, "attempt": "x"}], "results[2].attempt"),
        ([{"attempt": 1}], "results[0].task"),
        ([{"task": 1, "attempt": 1, "colour": "red"}], "results[0].colour"),
        ([7], "results[0]"),
        ([None], "results[0]"),
    ],
)
def test_it_names_the_bad_field_and_completes_nothing(make_agent, orchestra, results, field):
    worker = make_agent(orchestra=orchestra)
    TaskFactory(orchestra=orchestra)
    [task] = claim(worker)
    if isinstance(results, list) and results and isinstance(results[0], dict) and "task" in results[0]:
        results[0]["task"] = task["id"]
    r = worker.api.post(URL, {"results": results})
    assert r.status_code == 400, r.json()
    assert field in r.json()["error"]["details"]
    assert Task.objects.get(pk=task["id"]).status == "running"


def test_it_bounds_the_batch(make_agent, settings):
    settings.SYMPHONY_TASK_MAX_CLAIM = 2
    r = make_agent().api.post(URL, {"results": [{"task": n, "attempt": 1} for n in range(1, 4)]})
    assert r.status_code == 400
    assert "results" in r.json()["error"]["details"]


def test_it_refuses_keys_not_bound_to_an_agent(operator_api):
    r = operator_api.post(URL, {"results": [{"task": 1, "attempt": 1}]})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "agent_key_required"


def test_it_finishes_a_waiting_parent_when_its_child_completes_in_a_batch(make_agent, orchestra):
    """The hooks of a single completion (children bookkeeping, workflows) run for each entry."""
    worker = make_agent(orchestra=orchestra)
    TaskFactory(orchestra=orchestra)
    [parent] = claim(worker)
    r = worker.api.post(f"/api/v1/tasks/{parent['id']}/children/", {"attempt": 1, "children": [{"kind": "echo"}]})
    assert r.status_code == 201, r.json()
    answers = worker.api.post(URL, {"results": [entry(parent, wait_for_children=True)]}).json()["results"]
    assert answers[0]["task_status"] == "waiting"
    [child] = claim(worker)
    assert worker.api.post(URL, {"results": [entry(child)]}).json()["completed"] == 1
    assert Task.objects.get(pk=parent["id"]).status == "succeeded"


def test_it_writes_a_webhook_delivery_for_each_completion(make_agent, orchestra, settings):
    from webhooks.models import Delivery
    from webhooks.services import webhook_create

    settings.SYMPHONY_WEBHOOK_ALLOW_PRIVATE = True
    webhook_create(actor=None, project=orchestra.project, url="http://127.0.0.1:9/in", events=["task.*"])
    worker = make_agent(orchestra=orchestra)
    TaskFactory.create_batch(2, orchestra=orchestra)
    tasks = claim(worker, max_tasks=2)
    assert worker.api.post(URL, {"results": [entry(t) for t in tasks]}).json()["completed"] == 2
    assert Delivery.objects.filter(event_type="task.succeeded").count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_worker_client_completes_several_tasks_in_one_call(live_server, make_agent, orchestra, audit_sealing):
    from symphony_agent import ProtocolClient

    worker = make_agent(orchestra=orchestra)
    TaskFactory.create_batch(3, orchestra=orchestra)
    client = ProtocolClient(live_server.url, worker.key)
    tasks = client.claim(max_tasks=3)
    stale = {"task": tasks[0]["id"], "attempt": tasks[0]["attempt"] + 1, "result": None}
    answers = client.complete_many([stale, *({"task": t["id"], "attempt": t["attempt"], "result": 1} for t in tasks)])
    assert [a["status_code"] for a in answers] == [409, 200, 200, 200]
    assert set(Task.objects.values_list("status", flat=True)) == {"succeeded"}
    audit_sealing.wait()  # sealed in the background after the server's commits
    assert AuditEvent.objects.filter(chain_seq__isnull=True).count() == 0
