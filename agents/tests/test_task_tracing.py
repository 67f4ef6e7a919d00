"""One trace shows a task's submission, claim and completion (issue 5, tracing)."""

import pytest

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _named(exporter, name):
    return [span for span in exporter.get_finished_spans() if span.name == name]


@pytest.mark.django_db
def test_it_traces_submission_claim_and_completion_in_the_callers_trace(spans, operator_api, make_agent, orchestra):
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    orchestra.state = "running"
    orchestra.save(update_fields=["state"])

    submitted = operator_api.post(
        "/api/v1/tasks/",
        {"orchestra": orchestra.pk, "kind": "echo", "input": {"n": 1}, "required_capabilities": ["echo"]},
        traceparent=CALLER,
    )
    assert submitted.status_code == 201, submitted.content
    claimed = worker.api.post("/api/v1/agent/claim/", {"max_tasks": 1}).json()["tasks"]
    assert [task["id"] for task in claimed] == [submitted.json()["id"]]
    done = worker.api.post(f"/api/v1/tasks/{claimed[0]['id']}/complete/", {"result": {"ok": True}, "attempt": 1})
    assert done.status_code == 200, done.content

    [submit] = _named(spans, "symphony.task.submit")
    [claim] = _named(spans, "symphony.task.claim")
    [complete] = _named(spans, "symphony.task.complete")
    assert {format(s.context.trace_id, "032x") for s in (submit, claim, complete)} == {TRACE_ID}
    # The stored traceparent is the submission span's, so the agent's work hangs under it too.
    assert claimed[0]["traceparent"] == f"00-{TRACE_ID}-{format(submit.context.span_id, '016x')}-01"
    assert claim.parent.span_id == submit.context.span_id
    assert complete.attributes["symphony.agent"] == worker.agent.name


@pytest.mark.django_db
def test_it_keeps_the_callers_traceparent_when_tracing_is_off(operator_api, orchestra):
    submitted = operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}, traceparent=CALLER)

    assert submitted.status_code == 201, submitted.content
    assert submitted.json()["traceparent"] == CALLER
