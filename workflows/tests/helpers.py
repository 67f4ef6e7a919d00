"""Small helpers of the workflows tests: submit a run, run a step as an agent."""

from __future__ import annotations

from typing import Any


def submit(api: Any, orchestra: Any, steps: list[dict[str, Any]], **extra: Any) -> Any:
    return api.post("/api/v1/workflows/", {"orchestra": orchestra.pk, "name": "run", "steps": steps, **extra})


def claim(worker: Any, max_tasks: int = 10) -> list[dict[str, Any]]:
    r = worker.api.post("/api/v1/agent/claim/", {"max_tasks": max_tasks})
    assert r.status_code == 200, r.content
    return r.json()["tasks"]


def complete(worker: Any, task: dict[str, Any], result: Any = None, **extra: Any) -> Any:
    return worker.api.post(
        f"/api/v1/tasks/{task['id']}/complete/", {"attempt": task["attempt"], "result": result, **extra}
    )


def fail(worker: Any, task: dict[str, Any], error: str = "boom") -> Any:
    return worker.api.post(f"/api/v1/tasks/{task['id']}/fail/", {"attempt": task["attempt"], "error": error})


def steps_by_key(api: Any, run_id: int) -> dict[str, dict[str, Any]]:
    body = api.get(f"/api/v1/workflows/{run_id}/").json()
    return {step["key"]: step for step in body["steps"]}
