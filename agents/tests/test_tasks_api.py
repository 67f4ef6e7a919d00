"""/api/v1/tasks/ (and agents/{id}/execute/): submission, idempotency, limits, traceparent, cancel, retry."""

from __future__ import annotations

import pytest

from agents.models import Task
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def submit(api, orchestra, **fields):
    return api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo", **fields})


def test_it_submits_a_task_with_the_documented_shape(operator_api, orchestra):
    r = submit(
        operator_api,
        orchestra,
        input={"text": "hi"},
        required_capabilities=["echo"],
        priority="high",
        max_attempts=5,
        idempotency_key="k1",
    )
    assert r.status_code == 201, r.json()
    body = r.json()
    for field in ("id", "status", "agent", "attempts", "result", "error"):
        assert field in body
    assert body["status"] == "pending"
    assert body["priority"] == "high"
    assert body["max_attempts"] == 5
    assert body["agent"] is None
    assert body["attempts"] == 0
    assert AuditEvent.objects.filter(event_type="task.submitted", resource_id=str(body["id"])).exists()


def test_it_returns_the_existing_task_for_a_repeated_idempotency_key(make_api, orchestra):
    api = make_api("operator")
    first = submit(api, orchestra, idempotency_key="order-42")
    second = submit(api, orchestra, idempotency_key="order-42", input={"other": True})
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert Task.objects.count() == 1
    # Another submitter's identical key is a different task.
    other = submit(make_api("operator"), orchestra, idempotency_key="order-42")
    assert other.status_code == 201
    assert Task.objects.count() == 2


def test_it_rejects_an_oversize_input_naming_input(operator_api, orchestra, settings):
    settings.SYMPHONY_TASK_MAX_INPUT_BYTES = 1024
    r = submit(operator_api, orchestra, input={"blob": "x" * 2000})
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["code"] == "input_too_large"
    assert error["message"].startswith("input:")
    assert "input" in error["details"]
    assert not Task.objects.exists()


def test_it_rejects_an_input_over_the_default_256_kib(operator_api, orchestra):
    r = submit(operator_api, orchestra, input={"blob": "x" * 262_144})
    assert r.status_code == 413
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "has space"}, "kind"),
        ({"priority": "whenever"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"required_capabilities": ["UPPER"]}, "required_capabilities"),
        ({"orchestra": 999999}, "orchestra"),
    ],
)
def test_it_rejects_bad_fields_naming_them(operator_api, orchestra, fields, field):
    r = operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo", **fields})
    assert r.status_code == 400
    assert field in r.json()["error"]["details"]
    assert not Task.objects.exists()


def test_it_keeps_a_valid_traceparent_and_ignores_an_invalid_one(operator_api, orchestra):
    r = operator_api.post(
        "/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}, traceparent=TRACEPARENT.upper()
    )
    assert r.json()["traceparent"] == TRACEPARENT
    for bad in ["garbage", "ff-" + TRACEPARENT[3:], "00-" + "0" * 32 + "-00f067aa0ba902b7-01"]:
        r = operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}, traceparent=bad)
        assert r.status_code == 201
        assert r.json()["traceparent"] == ""


def test_it_refuses_submission_into_a_stopped_orchestra(operator_api, orchestra):
    orchestra.state = "stopped"
    orchestra.save()
    r = submit(operator_api, orchestra)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "orchestra_state_conflict"


def test_it_needs_agent_execute_to_submit(make_api, orchestra):
    r = submit(make_api("viewer"), orchestra)
    assert r.status_code == 403
    assert not Task.objects.exists()


def test_it_submits_to_one_agent_with_execute(operator_api, make_agent):
    worker = make_agent(capabilities=["echo"])
    r = operator_api.post(f"/api/v1/agents/{worker.agent.pk}/execute/", {"kind": "echo", "input": {"a": 1}})
    assert r.status_code == 201, r.json()
    assert r.json()["target_agent"] == worker.agent.pk
    claimed = worker.api.post("/api/v1/agent/claim/").json()["tasks"]
    assert [t["id"] for t in claimed] == [r.json()["id"]]


def test_it_cancels_a_pending_task_and_refuses_twice(operator_api, orchestra):
    task_id = submit(operator_api, orchestra).json()["id"]
    r = operator_api.post(f"/api/v1/tasks/{task_id}/cancel/", {"reason": "changed my mind"})
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    again = operator_api.post(f"/api/v1/tasks/{task_id}/cancel/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "task_state_conflict"
    event = AuditEvent.objects.get(event_type="task.cancelled")
    assert event.details == {"reason": "changed my mind"}


def test_it_retries_a_cancelled_task_with_a_fresh_budget(operator_api, orchestra):
    task_id = submit(operator_api, orchestra).json()["id"]
    assert operator_api.post(f"/api/v1/tasks/{task_id}/retry/").status_code == 409
    operator_api.post(f"/api/v1/tasks/{task_id}/cancel/")
    r = operator_api.post(f"/api/v1/tasks/{task_id}/retry/")
    assert r.status_code == 200
    assert r.json()["status"] == "pending"
    assert r.json()["attempts"] == 0
    assert AuditEvent.objects.filter(event_type="task.retried").count() == 1


def test_it_filters_tasks(operator_api, orchestra, make_agent):
    other = type(orchestra).objects.create(name="other", state="running")
    submit(operator_api, orchestra, kind="echo", priority="low")
    submit(operator_api, orchestra, kind="sleep", priority="urgent")
    submit(operator_api, other, kind="echo")

    def ids(**params):
        return sorted(
            t["kind"] + ":" + t["priority"] for t in operator_api.get("/api/v1/tasks/", params).json()["results"]
        )

    assert ids(orchestra=other.pk) == ["echo:normal"]
    assert ids(kind="sleep") == ["sleep:urgent"]
    assert ids(priority="low") == ["echo:low"]
    assert ids(status="pending", orchestra=orchestra.pk) == ["echo:low", "sleep:urgent"]
    assert ids(created_after="2000-01-01T00:00:00Z") == ["echo:low", "echo:normal", "sleep:urgent"]
    assert ids(created_before="2000-01-01T00:00:00Z") == []
    assert operator_api.get("/api/v1/tasks/", {"priority": "nope"}).status_code == 400


def test_it_answers_404_for_a_non_numeric_task_id(operator_api):
    assert operator_api.get("/api/v1/tasks/abc/").status_code == 404


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_submission_that_loses_the_idempotency_race_answers_with_the_winners_task(make_api, orchestra):
    """Both submissions pass the "already used?" look-up before either commits: the loser's insert
    waits on the unique index, fails when the winner commits, and answers 200 with the winner's task."""
    from agents import services
    from tests.races import behind_a_held_transaction

    api = make_api("operator")
    winner: list[int] = []

    def win() -> None:
        task, _ = services.task_submit(submitter=api.user, kind="echo", orchestra=orchestra, idempotency_key="order-7")
        winner.append(task.pk)

    response, waited = behind_a_held_transaction(win, lambda: submit(api, orchestra, idempotency_key="order-7"))
    assert waited, "the second submission never waited on the first"
    assert response.status_code == 200, response.content[:300]
    assert response.json()["id"] == winner[0]
    assert Task.objects.filter(idempotency_key="order-7").count() == 1
    assert AuditEvent.objects.filter(event_type="task.submitted").count() == 1
