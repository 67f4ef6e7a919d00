"""The server-sent-events endpoints: GET /api/v1/tasks/{id}/stream/ (agents/streams.py explains the design).

Authentication, permission, scoping and errors are the sync API's own: the stream asks ``TaskViewSet``
for the task exactly as ``GET /api/v1/tasks/{id}/`` does (its ``initial()``: API key or session,
``agent:read``; then its ``get_object()``: the same selector, so a task the viewer may not see is 404),
before the stream starts, on the stream pool's threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework.exceptions import ValidationError
from rest_framework.viewsets import GenericViewSet

from accounts.authentication import as_if_new
from agents import streams
from agents.models import Task
from agents.views import TaskViewSet

T = TypeVar("T")


def detail_view(viewset: type[GenericViewSet], request: HttpRequest, pk: int) -> GenericViewSet:
    """``viewset`` set up as for its ``GET .../{pk}/`` (retrieve), without list filters."""
    view = viewset(action_map={"get": "retrieve"}, action="retrieve", filter_backends=[])
    view.get = view.retrieve  # as ``as_view()`` binds it: the permission class checks the method is served
    view.args, view.kwargs = (), {"pk": str(pk)}
    view.request = view.initialize_request(request)
    view.headers, view.format_kwarg = dict(view.default_response_headers), None
    return view


def last_event_id(request: HttpRequest) -> tuple[str, str]:
    """(the client's resume point, the name it came under): ``Last-Event-ID``, else ``?after=``, else ""."""
    if request.headers.get("Last-Event-ID"):
        return request.headers["Last-Event-ID"], "Last-Event-ID"
    return request.GET.get("after", ""), "after"


def _seq_cursor(request: HttpRequest) -> int:
    raw, name = last_event_id(request)
    try:
        value = int(raw or "0")
    except ValueError:
        value = -1
    if value < 0:
        raise ValidationError({name: ["A non-negative integer (an event seq) is required."]})
    return value


def open_stream(viewset: type[GenericViewSet], request: HttpRequest, pk: int, cursor: Callable[[HttpRequest], T]) -> (
    tuple[HttpResponse | None, T | None]
):  # fmt: skip
    """(error response, None) or (None, ``cursor(request)``) after the checks of ``viewset``'s detail view:
    its authentication and permission (``initial()``) and its own lookup (``get_object()``: 404 for an
    object the viewer may not see), so a stream is exactly as visible as the detail. Sync: call it on
    the stream pool (``sync_to_async(..., thread_sensitive=False)``)."""
    view = detail_view(viewset, request, pk)
    drf_request = view.request
    try:
        view.initial(drf_request)
        view.get_object()
        return None, cursor(request)
    except Exception as exc:  # noqa: BLE001 - handed to DRF's handler, which re-raises what it does not know
        response = view.finalize_response(drf_request, view.handle_exception(exc))
        return response.render(), None


def access(viewset: type[GenericViewSet], request: HttpRequest, pk: int) -> streams.Access:
    """The checks of ``open_stream`` again, on a copy of ``request`` that is checked as a new request
    would be (``as_if_new``), for the stream to ask while it lasts (``streams.Access``)."""
    return streams.Access(lambda: open_stream(viewset, as_if_new(request), pk, lambda _request: None)[0])


def streaming(body: Any) -> StreamingHttpResponse:
    """A ``text/event-stream`` response of ``body`` (an async iterator of bytes), never buffered or cached."""
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


async def task_stream(request: HttpRequest, pk: int) -> HttpResponse:
    """Server-sent events of one task: its events (``id`` = seq) and ``status`` changes, until it ends."""
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    error, after = await sync_to_async(open_stream, thread_sensitive=False)(TaskViewSet, request, pk, _seq_cursor)
    if error is not None:
        return error
    return streaming(
        streams.follow(
            task_ids=[pk],
            cursors={pk: after},
            event_id=lambda row: str(row.seq),
            finished=lambda statuses: statuses.get(pk) in Task.FINISHED or pk not in statuses,
            access=access(TaskViewSet, request, pk),
        )
    )
