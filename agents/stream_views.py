"""The server-sent-events endpoints: GET /api/v1/tasks/{id}/stream/ (agents/streams.py explains the design).

Authentication, permission, scoping and errors are the sync API's own: the stream asks ``TaskViewSet``
for the task exactly as ``GET /api/v1/tasks/{id}/`` does (its ``initial()``: API key or session,
``agent:read``; then its ``get_object()``: the same selector, so a task the viewer may not see is 404),
before the stream starts, on the stream pool's threads.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework.exceptions import ValidationError

from agents import streams
from agents.models import Task
from agents.views import TaskViewSet


def _task_detail_view(request: HttpRequest, task_id: int) -> TaskViewSet:
    """``TaskViewSet`` set up as for ``GET /api/v1/tasks/{task_id}/`` (retrieve), without list filters."""
    view = TaskViewSet(action_map={"get": "retrieve"}, action="retrieve", filter_backends=[])
    view.get = view.retrieve  # as ``as_view()`` binds it: the permission class checks the method is served
    view.args, view.kwargs = (), {"pk": str(task_id)}
    view.request = view.initialize_request(request)
    view.headers, view.format_kwarg = dict(view.default_response_headers), None
    return view


def _cursor(request: HttpRequest) -> int:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        name = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "after"
        raise ValidationError({name: ["A non-negative integer (an event seq) is required."]})
    return value


def _open_task_stream(request: HttpRequest, task_id: int) -> tuple[HttpResponse | None, int]:
    """(error response, None) or (None, cursor), after the same checks as GET /api/v1/tasks/{id}/."""
    view = _task_detail_view(request, task_id)
    drf_request = view.request
    try:
        view.initial(drf_request)
        view.get_object()  # the detail view's own lookup: 404 for a task the viewer may not see
        return None, _cursor(request)
    except Exception as exc:  # noqa: BLE001 - handed to DRF's handler, which re-raises what it does not know
        response = view.finalize_response(drf_request, view.handle_exception(exc))
        return response.render(), 0


def _streaming(body: Any) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


async def task_stream(request: HttpRequest, pk: int) -> HttpResponse:
    """Server-sent events of one task: its events (``id`` = seq) and ``status`` changes, until it ends."""
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    error, after = await sync_to_async(_open_task_stream, thread_sensitive=False)(request, pk)
    if error is not None:
        return error
    return _streaming(
        streams.follow(
            task_ids=[pk],
            cursors={pk: after},
            event_id=lambda row: str(row.seq),
            finished=lambda statuses: statuses.get(pk) in Task.FINISHED or pk not in statuses,
        )
    )
