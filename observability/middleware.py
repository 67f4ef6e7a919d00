"""Request context middleware: request id in, request id out, context cleared at both ends."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from observability import context


class RequestContextMiddleware:
    """Take ``X-Request-ID`` when sane (else make one), bind it for the request, echo it back."""

    header = "X-Request-ID"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = context.sanitize_request_id(request.headers.get(self.header))
        request.request_id = request_id
        context.clear_request()
        context.bind_request(request, request_id)
        try:
            response = self.get_response(request)
            response[self.header] = request_id
            return response
        finally:
            context.clear_request()
