"""Checks on a submitted DAG: unique keys, known dependencies, no cycle, a bounded size."""

from __future__ import annotations

from collections import deque
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError


def _error(message: str) -> ValidationError:
    return ValidationError({"steps": [message]})


def validate_dag(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``steps`` in a topological order (dependencies first, otherwise submission order).

    Raises ``ValidationError`` on ``steps`` naming the offending step: too many steps, a duplicate key,
    an unknown dependency, a step depending on itself, or a cycle (the message lists it).
    """
    limit = settings.SYMPHONY_WORKFLOW_MAX_STEPS
    if len(steps) > limit:
        raise _error(f"At most {limit} steps are allowed (SYMPHONY_WORKFLOW_MAX_STEPS); got {len(steps)}.")
    by_key: dict[str, dict[str, Any]] = {}
    for step in steps:
        if step["key"] in by_key:
            raise _error(f"Step '{step['key']}': the key is used by more than one step.")
        by_key[step["key"]] = step
    for step in steps:
        for dependency in step.get("depends_on", []):
            if dependency not in by_key:
                raise _error(f"Step '{step['key']}' depends on unknown step '{dependency}'.")
            if dependency == step["key"]:
                raise _error(f"Step '{step['key']}' depends on itself.")
    return _topological(steps, by_key)


def _topological(steps: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    indegree = {step["key"]: len(set(step.get("depends_on", []))) for step in steps}
    dependents: dict[str, list[str]] = {key: [] for key in by_key}
    for step in steps:
        for dependency in set(step.get("depends_on", [])):
            dependents[dependency].append(step["key"])
    ready = deque(key for key, count in indegree.items() if count == 0)
    ordered = []
    while ready:
        key = ready.popleft()
        ordered.append(by_key[key])
        for child in dependents[key]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(ordered) < len(steps):
        raise _error(f"Steps form a cycle: {' -> '.join(_cycle(by_key, indegree))}.")
    return ordered


def _cycle(by_key: dict[str, dict[str, Any]], indegree: dict[str, int]) -> list[str]:
    """One cycle among the steps left with dependencies (each has one left inside the remainder)."""
    left = {key for key, count in indegree.items() if count > 0}
    key = min(left)
    path: list[str] = []
    while key not in path:
        path.append(key)
        key = next(dep for dep in by_key[key].get("depends_on", []) if dep in left)
    cycle = path[path.index(key) :]
    return [*cycle, cycle[0]]  # read "a -> b": a depends on b
