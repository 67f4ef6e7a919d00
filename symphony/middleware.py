"""API middleware: request guards, before any view runs (rate limits: ``ratelimit.middleware``)."""

from __future__ import annotations

import io
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse

from symphony.exceptions import error_body, is_api_path


class ApiRequestGuardMiddleware:
    """Refuse a NUL character in an ``/api/`` URL (400), and a body announced larger than
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413), in the one error shape, before anything reads them. DRF reads
    the request stream itself, so Django's own limit does not apply to it. A chunked body has no
    Content-Length: ``ChunkedBodyMiddleware`` reads it first, within the same limit.

    Content types need no check here: the one parser is JSON, so DRF answers 415 to any view that reads
    a body of another type, and a body nobody reads does no harm.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request):
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    @staticmethod
    def _refusal(request: HttpRequest) -> HttpResponse | None:
        if "\x00" in request.path_info or "%00" in request.META.get("QUERY_STRING", ""):
            # PostgreSQL text cannot hold NUL: a lookup with one would be a DataError 500.
            message = "NUL (%00) characters are not allowed in the URL."
            return JsonResponse(error_body("bad_request", message), status=400)
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return JsonResponse(error_body("bad_request", "Invalid Content-Length header."), status=400)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            message = f"Request body too large: {length} bytes, the limit is {limit}."
            return JsonResponse(error_body("request_too_large", message, {"limit": limit}), status=413)
        return None


class ChunkedBodyMiddleware:
    """Read a chunked request body (``Transfer-Encoding: chunked``, no ``Content-Length``) within
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (``SYMPHONY_MAX_REQUEST_BYTES``), or refuse it with 413.

    Django sizes the body by ``Content-Length`` alone, so without one it reads nothing: a chunked
    ``POST`` would be processed as an empty body. The WSGI server has already removed the chunk
    framing (gunicorn refuses a request with both headers); this reads at most one byte past the
    limit and hands the rest of the stack a body with its length. Place it before anything that reads
    the body (sessions, CSRF, the login rate limit), after the request-context middleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower() and not meta.get("CONTENT_LENGTH"):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            stream = meta["wsgi.input"]
            body = stream.read(limit + 1) if limit is not None else stream.read()
            if limit is not None and len(body) > limit:
                return self._too_large(request, limit)
            meta["CONTENT_LENGTH"] = str(len(body))
            request._stream = LimitedStream(io.BytesIO(body), len(body))
        return self.get_response(request)

    @staticmethod
    def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
        message = f"Request body too large: the limit is {limit} bytes."
        if is_api_path(request):
            return JsonResponse(error_body("request_too_large", message, {"limit": limit}), status=413)
        return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
