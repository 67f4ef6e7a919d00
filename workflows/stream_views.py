"""GET /api/v1/workflows/{id}/stream/: one server-sent-events stream for a whole workflow run.

The same core as a task's stream (agents/streams.py): it follows every task of the run (steps and the
child tasks that exist when the stream opens) and ends once all of them have finished. Visibility is
the run detail's own (``WorkflowRunViewSet``: authentication, ``agent:read``, its lookup).

An event's SSE ``id`` is the stream's whole position, ``task:seq`` pairs of every task that has sent an
event (``12:3,14:1``), because the steps' events interleave and ids of concurrent tasks do not commit in
order: a reconnecting ``EventSource`` sends it back as ``Last-Event-ID`` and misses nothing.
"""

from __future__ import annotations

import re

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import ValidationError

from agents import streams
from agents.models import Task
from agents.stream_views import access, last_event_id, open_stream, streaming
from workflows.views import WorkflowRunViewSet

_POSITION = re.compile(r"^(\d{1,18}:\d{1,9})(,\d{1,18}:\d{1,9})*$")


def _position(request: HttpRequest) -> dict[int, int]:
    raw, name = last_event_id(request)
    if not raw:
        return {}
    if not _POSITION.match(raw):
        raise ValidationError({name: ["Expected task:seq pairs separated by commas, as the stream's event ids."]})
    return {int(task): int(seq) for task, seq in (pair.split(":") for pair in raw.split(","))}


def _run_tasks(run_id: int) -> list[int]:
    return list(Task.objects.filter(workflow=run_id).order_by("id").values_list("id", flat=True))


async def workflow_stream(request: HttpRequest, pk: int) -> HttpResponse:
    """Server-sent events of a workflow run's tasks (events and ``status`` changes) until all have finished."""
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    error, position = await sync_to_async(open_stream, thread_sensitive=False)(
        WorkflowRunViewSet, request, pk, _position
    )
    if error is not None:
        return error
    task_ids = await sync_to_async(_run_tasks, thread_sensitive=False)(pk)
    cursors = {task_id: position.get(task_id, 0) for task_id in task_ids}

    def event_id(row: object) -> str:
        return ",".join(f"{task_id}:{seq}" for task_id, seq in cursors.items() if seq)

    def finished(statuses: dict[int, str]) -> bool:
        return all(statuses.get(task_id, Task.Status.CANCELLED) in Task.FINISHED for task_id in task_ids)

    return streaming(
        streams.follow(
            task_ids=task_ids, cursors=cursors, event_id=event_id, finished=finished,
            access=access(WorkflowRunViewSet, request, pk),
        )
    )  # fmt: skip
