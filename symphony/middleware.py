"""API middleware: rate limits (and their headers) and request guards, before any view runs.

Middleware rather than a DRF throttle, because DRF checks throttles after authentication and
permissions: a throttle would never see the 401s of a key-guessing flood or the 403s (each one
audited) of a scope-probing one, nor unknown ``/api/`` URLs. Here every request under ``/api/`` is
counted and every answer carries the ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from accounts import ratelimit
from symphony.exceptions import error_body, is_api_path


def _rate_limited(usage: ratelimit.Usage, *, api: bool) -> HttpResponse:
    retry_after = str(usage.reset)
    message = f"Rate limit exceeded: {usage.limit} requests per window. Retry in {retry_after} s."
    if api:
        details = {"limit": usage.limit, "retry_after": int(retry_after), "scope": usage.scope}
        response: HttpResponse = JsonResponse(error_body("rate_limited", message, details), status=429)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = retry_after
    for header, value in usage.headers().items():
        response[header] = value
    return response


def _unavailable() -> HttpResponse:
    body = error_body("rate_limiter_unavailable", "The rate limiter is unavailable; try again shortly.")
    response = JsonResponse(body, status=503)
    response["Retry-After"] = "5"
    return response


class RateLimitMiddleware:
    """Count every ``/api/`` request and every login POST; answer 429 past the limit.

    Place it after ``AuthenticationMiddleware`` (session users are counted per user) and after the
    request-context middleware (the error body carries the request id). When the counters' cache is
    down, ``SYMPHONY_RATELIMIT_FAIL_OPEN`` serves unlimited (with a warning) or answers 503.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.RATELIMIT_ENABLE:
            return self.get_response(request)
        if is_api_path(request):
            return self._api(request)
        if request.method == "POST" and self._is_login(request):
            return self._login(request)
        return self.get_response(request)

    def _api(self, request: HttpRequest) -> HttpResponse:
        try:
            usage = ratelimit.check_api_request(request)
        except ratelimit.RateLimiterUnavailable as exc:
            ratelimit.warn_unavailable(exc)
            return self.get_response(request) if settings.SYMPHONY_RATELIMIT_FAIL_OPEN else _unavailable()
        if usage.exceeded:
            ratelimit.record_rejection(request, usage)
            return _rate_limited(usage, api=True)
        response = self.get_response(request)
        for header, value in usage.headers().items():
            response[header] = value
        return response

    def _login(self, request: HttpRequest) -> HttpResponse:
        try:
            usage = ratelimit.check_login_attempt(request, request.POST.get("username", ""))
        except ratelimit.RateLimiterUnavailable as exc:
            ratelimit.warn_unavailable(exc)
            if not settings.SYMPHONY_RATELIMIT_FAIL_OPEN:
                return HttpResponse("Login is temporarily unavailable.", status=503, content_type="text/plain")
            return self.get_response(request)
        if usage is not None:
            ratelimit.record_rejection(request, usage)
            return _rate_limited(usage, api=False)
        return self.get_response(request)

    @staticmethod
    def _is_login(request: HttpRequest) -> bool:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
        return match.view_name in settings.SYMPHONY_RATELIMIT_LOGIN_VIEWS


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
