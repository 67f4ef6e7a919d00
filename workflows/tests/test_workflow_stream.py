"""GET /api/v1/workflows/{id}/stream/: one SSE stream for every task of a run, resumable by Last-Event-ID."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from agents.tests.test_streams import parse_sse
from workflows.tests.helpers import claim, complete, submit

# transaction: the stream reads on its own threads, which see only committed rows.
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def read_stream(path: str, headers: dict[str, str]) -> tuple[int, list[tuple[str | None, str, str]]]:
    """The whole answer of a stream that ends (its run has finished), through the ASGI handler."""

    async def go() -> tuple[int, bytes]:
        response = await AsyncClient().get(path, headers=headers)
        if not response.streaming:
            return response.status_code, response.content
        return response.status_code, b"".join([chunk async for chunk in response.streaming_content])

    code, body = async_to_sync(go)()
    return code, list(parse_sse(body.decode().split("\n")))


def post_event(worker, task, text: str) -> None:
    r = worker.api.post(f"/api/v1/tasks/{task['id']}/events/", {"attempt": task["attempt"], "type": "output",
                                                                "data": {"text": text}})  # fmt: skip
    assert r.status_code == 201, r.content


def test_a_run_stream_replays_every_steps_events_and_resumes_from_its_last_event_id(
    operator_api, make_agent, make_api, orchestra
):
    worker = make_agent(orchestra=orchestra)
    run = submit(operator_api, orchestra, [{"key": "a", "kind": "x"}, {"key": "b", "kind": "x", "depends_on": ["a"]}])
    assert run.status_code == 201, run.content
    run_id = run.json()["id"]
    (a,) = claim(worker)
    post_event(worker, a, "a1")
    post_event(worker, a, "a2")
    assert complete(worker, a, "A").status_code == 200
    (b,) = claim(worker)
    post_event(worker, b, "b1")
    assert complete(worker, b, "B").status_code == 200

    reader = make_api("viewer")._headers({})
    path = f"/api/v1/workflows/{run_id}/stream/"
    code, items = read_stream(path, reader)
    assert code == 200
    outputs = [(event_id, data) for event_id, event, data in items if event == "output"]
    assert [event_id for event_id, _ in outputs] == [f"{a['id']}:1", f"{a['id']}:2", f"{a['id']}:2,{b['id']}:1"]
    assert ['"a1"' in outputs[0][1], '"a2"' in outputs[1][1], '"b1"' in outputs[2][1]] == [True] * 3
    statuses = [data for _, event, data in items if event == "status"]
    assert len(statuses) == 2 and all('"succeeded"' in data for data in statuses)
    assert items[-1][1] == "end"

    code, resumed = read_stream(path, {**reader, "Last-Event-ID": f"{a['id']}:2"})
    assert [data for _, event, data in resumed if event == "output"] == [outputs[2][1]]

    bad = async_to_sync(AsyncClient().get)(path, headers={**reader, "Last-Event-ID": "7"})
    assert bad.status_code == 400  # answered before the stream starts
    assert "Last-Event-ID" in bad.json()["error"]["details"]


def test_a_run_stream_is_as_visible_as_the_run(operator_api, make_api, orchestra):
    run_id = submit(operator_api, orchestra, [{"key": "a", "kind": "x"}]).json()["id"]
    path = f"/api/v1/workflows/{run_id}/stream/"
    assert read_stream(path, {})[0] == 401
    assert read_stream(path, make_api()._headers({}))[0] == 404  # bound to no project: no run to see
    assert read_stream("/api/v1/workflows/999999/stream/", make_api("viewer")._headers({}))[0] == 404
