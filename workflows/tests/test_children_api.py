from __future__ import annotations

import pytest

from workflows.tests.helpers import claim, complete, fail, submit

pytestmark = pytest.mark.django_db


def _children(worker, task, *kinds):
    return worker.api.post(
        f"/api/v1/tasks/{task['id']}/children/",
        {"attempt": task["attempt"], "children": [{"kind": kind, "input": {"n": i}} for i, kind in enumerate(kinds)]},
    )


def test_a_parent_waits_for_its_children_and_gets_their_results(operator_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    run_id = submit(operator_api, orchestra, [{"key": "fan", "kind": "split"}, {"key": "after", "kind": "x",
                    "depends_on": ["fan"]}]).json()["id"]  # fmt: skip
    (parent,) = claim(worker)
    r = _children(worker, parent, "part", "part")
    assert r.status_code == 201, r.content
    assert [c["workflow"] for c in r.json()["children"]] == [run_id, run_id]
    assert complete(worker, parent, {"split": 2}, wait_for_children=True).json()["status"] == "waiting"
    listed = operator_api.get(f"/api/v1/tasks/{parent['id']}/children/").json()
    assert [c["parent"] for c in listed] == [parent["id"]] * 2
    first, second = claim(worker)
    complete(worker, first, "a")
    assert operator_api.get(f"/api/v1/tasks/{parent['id']}/").json()["status"] == "waiting"
    assert claim(worker) == []  # the dependent step waits for the parent
    complete(worker, second, "b")
    body = operator_api.get(f"/api/v1/tasks/{parent['id']}/").json()
    assert body["status"] == "succeeded" and body["result"]["split"] == 2
    assert [c["result"] for c in body["result"]["children_results"]] == ["a", "b"]
    (after,) = claim(worker)
    assert after["step_key"] == "after"


def test_a_failed_child_fails_its_waiting_parent(operator_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "split"})
    (parent,) = claim(worker)
    _children(worker, parent, "part")
    complete(worker, parent, None, wait_for_children=True)
    (child,) = claim(worker)
    fail(worker, child, "bad part")
    body = operator_api.get(f"/api/v1/tasks/{parent['id']}/").json()
    assert body["status"] == "failed" and "bad part" in body["error"]


def test_children_are_cancelled_with_their_parent_and_only_the_holder_creates_them(operator_api, make_agent, orchestra):
    worker, other = make_agent(orchestra=orchestra), make_agent(orchestra=orchestra)
    operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "split"})
    (parent,) = claim(worker)
    assert _children(other, parent, "part").status_code == 403
    _children(worker, parent, "part", "part")
    operator_api.post(f"/api/v1/tasks/{parent['id']}/cancel/")
    children = operator_api.get(f"/api/v1/tasks/{parent['id']}/children/").json()
    assert {c["status"] for c in children} == {"cancelled"}
    assert _children(worker, parent, "part").json()["error"]["code"] == "task_cancelled"
