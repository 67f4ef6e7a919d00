"""The server-sent-events endpoints: GET /api/v1/tasks/{id}/stream/ (agents/streams.py explains the design).

Authentication, permission and errors are the sync API's own: a DRF view runs its ``initial()`` (API key
or session, ``agent:read``, the one error shape) before the stream starts, on the stream pool's threads.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.views import APIView

from agents import selectors, streams
from agents.models import Task


class _TaskStreamGate(APIView):
    """Never routed: lends the stream views DRF's authentication, permission check and error answers."""

    required_perms = {"GET": "agent:read"}

    def get(self, request: Any, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - never called
        raise NotImplementedError


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
    view = _TaskStreamGate()
    view.args, view.kwargs = (), {"pk": task_id}
    drf_request = view.initialize_request(request)
    view.request, view.headers, view.format_kwarg = drf_request, dict(view.default_response_headers), None
    try:
        view.initial(drf_request)
        if not selectors.task_list().filter(pk=task_id).exists():
            raise NotFound("No such task.")
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
