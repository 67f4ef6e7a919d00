"""The rate-limit middleware: every ``/api/`` request and every login POST is counted before any view runs.

Middleware rather than a DRF throttle, because DRF checks throttles after authentication and
permissions: a throttle would never see the 401s of a key-guessing flood or the 403s (each one
audited) of a scope-probing one, nor unknown ``/api/`` URLs. Here every request under ``/api/`` is
counted and every answer carries the ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from rest_framework.exceptions import APIException

from observability.context import get_request_id
from ratelimit import limiter

#: Seconds a client is told to wait when the shared cache is unreachable.
UNAVAILABLE_RETRY_AFTER = 5


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def _error(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    # The one error shape (symphony.exceptions.error_body, which this lower layer cannot import).
    body = {"error": {"code": code, "message": message, "details": details, "request_id": get_request_id()}}
    return JsonResponse(body, status=status)


def _rate_limited(usage: limiter.Usage, *, api: bool) -> HttpResponse:
    retry_after = str(usage.reset)
    message = f"Rate limit exceeded: {usage.limit} requests per window. Retry in {retry_after} s."
    if api:
        details = {"limit": usage.limit, "retry_after": int(retry_after), "scope": usage.scope}
        response: HttpResponse = _error(429, "rate_limited", message, details)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = retry_after
    for header, value in usage.headers().items():
        response[header] = value
    return response


def _unavailable(*, api: bool) -> HttpResponse:
    if api:
        response: HttpResponse = _error(
            503, "rate_limiter_unavailable", "The rate limiter is unavailable; try again shortly."
        )
    else:
        response = HttpResponse("Login is temporarily unavailable.", status=503, content_type="text/plain")
    response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
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
        if _is_api(request):
            return self._api(request)
        if request.method == "POST" and self._is_login(request):
            return self._login(request)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        """A non-API view (the admin) refused with a 503 API error, e.g. an identity change while the
        shared cache cannot be invalidated: a 503 with ``Retry-After``, not a 500 page. DRF views
        answer those themselves."""
        if isinstance(exc, APIException) and exc.status_code == 503 and not _is_api(request):
            response = HttpResponse(f"{exc.detail}\n", status=503, content_type="text/plain; charset=utf-8")
            response["Retry-After"] = str(getattr(exc, "wait", None) or UNAVAILABLE_RETRY_AFTER)
            return response
        return None

    def _api(self, request: HttpRequest) -> HttpResponse:
        try:
            usage = limiter.check_api_request(request)
        except limiter.RateLimiterUnavailable as exc:
            limiter.note_unavailable(exc)
            return self.get_response(request) if settings.SYMPHONY_RATELIMIT_FAIL_OPEN else _unavailable(api=True)
        if usage.exceeded:
            limiter.record_rejection(request, usage)
            return _rate_limited(usage, api=True)
        response = self.get_response(request)
        for header, value in usage.headers().items():
            response[header] = value
        return response

    def _login(self, request: HttpRequest) -> HttpResponse:
        try:
            usage = limiter.check_login_attempt(request, request.POST.get("username", ""))
        except limiter.RateLimiterUnavailable as exc:
            limiter.note_unavailable(exc)
            return self.get_response(request) if settings.SYMPHONY_RATELIMIT_FAIL_OPEN else _unavailable(api=False)
        if usage is not None:
            limiter.record_rejection(request, usage)
            return _rate_limited(usage, api=False)
        return self.get_response(request)

    @staticmethod
    def _is_login(request: HttpRequest) -> bool:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
        return match.view_name in settings.SYMPHONY_RATELIMIT_LOGIN_VIEWS
