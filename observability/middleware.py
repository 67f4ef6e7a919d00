"""Request middleware: probes answered early; request id, log context and the access line per request."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse

from observability import context, metrics

access_log = structlog.get_logger("symphony.access")

# Paths whose access lines are DEBUG: probes and scrapes every few seconds are not news.
_QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/health/startup", "/metrics"})


class ProbeMiddleware:
    """Answer ``/health/live``, ``/health/ready`` and ``/health/startup`` before anything else runs.

    Place it first. Probes then skip sessions, authentication, CSRF and ``ALLOWED_HOSTS`` (a kubelet
    probes the pod IP, which is rarely an allowed host) and cost next to nothing. The views are the
    same ones the URLconf serves, so removing this middleware changes speed, not answers.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from observability import views

        self.get_response = get_response
        self.probes = {"/health/live": views.live, "/health/ready": views.ready, "/health/startup": views.startup}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.probes.get(request.path_info)
        if probe is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        request_id = context.sanitize_request_id(request.headers.get(RequestContextMiddleware.header))
        response = probe(request)
        response[RequestContextMiddleware.header] = request_id
        return response


class RequestContextMiddleware:
    """Take ``X-Request-ID`` when sane (else make one), bind it for the request, echo it back.

    Binds the request id into structlog's contextvars (user, key prefix and trace ids are added per
    line by the log processors, since DRF authenticates only inside the view), writes one access line
    per request, and counts API-key authentications. Context is cleared at the start and the end, so
    nothing leaks from one request into the next on a reused thread.
    """

    header = "X-Request-ID"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = context.sanitize_request_id(request.headers.get(self.header))
        request.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        context.clear_request()
        context.bind_request(request, request_id)
        started = time.perf_counter()
        response = None
        try:
            response = self.get_response(request)
            response[self.header] = request_id
            return response
        finally:
            try:
                self._account(request, response, round((time.perf_counter() - started) * 1000, 2))
            finally:
                context.clear_request()
                structlog.contextvars.clear_contextvars()

    def _account(self, request: HttpRequest, response: HttpResponse | None, duration_ms: float) -> None:
        status = response.status_code if response is not None else 500
        _count_api_key_authentication(request, response, status)
        level = "debug" if request.path_info in _QUIET_PATHS else "info"
        # The path only: query strings may carry anything. Headers are never logged.
        getattr(access_log, level)(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=duration_ms,
            client_ip=context.client_ip(request),
        )


def _count_api_key_authentication(request: HttpRequest, response: HttpResponse | None, status: int) -> None:
    """Count API-key authentications by outcome, seen from outside ``accounts`` (which sits above us).

    Success: DRF put an object with a ``prefix`` (an ApiKey) on ``request.auth``. Failure: a key
    header was sent and the answer is a 401; the error code of the one error shape says why.
    """
    meta = request.META
    sent_key = "HTTP_X_API_KEY" in meta or meta.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "
    if not sent_key:
        return
    if getattr(request.__dict__.get("auth"), "prefix", None):
        metrics.API_KEY_AUTHENTICATIONS.labels(outcome="success").inc()
    elif status == 401:
        data = getattr(response, "data", None)
        code = data.get("error", {}).get("code") if isinstance(data, dict) else None
        metrics.API_KEY_AUTHENTICATIONS.labels(outcome=metrics.api_key_outcome(code or "failure")).inc()
        metrics.AUTH_FAILURES.labels(method="api_key").inc()
