"""One error shape for every API error: ``{"error": {"code", "message", "details", "request_id"}}``.

``api_exception_handler`` wraps DRF's handler, which keeps ``Retry-After``, ``WWW-Authenticate`` and the
transaction rollback, and reshapes its answer. Django's ``ValidationError``, ``PermissionDenied`` and
``Http404`` are converted first (HackSoft example, api/exception_handlers.py). Anything else stays an
unhandled exception: a logged 500, never a 400.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

from observability.context import get_request_id


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details, "request_id": get_request_id()}}


class RateLimited(exceptions.Throttled):
    default_code = "rate_limited"


def _convert(exc: Exception) -> Exception:
    if isinstance(exc, Ratelimited):  # django-ratelimit's decorator, should a view use it
        return RateLimited()
    if isinstance(exc, exceptions.Throttled) and not isinstance(exc, RateLimited):
        return RateLimited(wait=exc.wait)
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    return exc


def _first_message(details: Any) -> str | None:
    """Find the first human message in a nested DRF error structure, prefixed by its field."""
    if isinstance(details, dict):
        for field, value in details.items():
            message = _first_message(value)
            if message:
                return message if field in ("non_field_errors", "detail") else f"{field}: {message}"
    elif isinstance(details, list):
        for value in details:
            message = _first_message(value)
            if message:
                return message
    elif details:
        return str(details)
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _convert(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django logs it and answers 500 (JSON for /api/, see handler500)

    if isinstance(exc, exceptions.ValidationError):
        # Subclasses with their own default_code (unknown_query_parameter) keep it.
        custom = type(exc).default_code != exceptions.ValidationError.default_code
        code, details = (type(exc).default_code if custom else "validation_error"), response.data
        message = _first_message(details) or "Invalid input."
    else:
        detail = getattr(exc, "detail", None)
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        code = codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
        message = str(detail) if detail is not None else str(exc)
        details = getattr(exc, "extra_details", None)
    response.data = error_body(code, message, details)
    return response


def is_api_path(request: HttpRequest) -> bool:
    """Whether the request is for the API, which answers errors in the one JSON shape."""
    return request.path_info.startswith("/api/")


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's own 400s (SuspiciousOperation), e.g. a form body past DATA_UPLOAD_MAX_MEMORY_SIZE: 413."""
    if is_api_path(request):
        if isinstance(exception, RequestDataTooBig):
            body = error_body("request_too_large", "Request body too large.")
            return JsonResponse(body, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        return JsonResponse(error_body("bad_request", "Bad request."), status=status.HTTP_400_BAD_REQUEST)
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request):
        body = error_body("permission_denied", "You do not have permission to perform this action.")
        return JsonResponse(body, status=status.HTTP_403_FORBIDDEN)
    return defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request):
        return JsonResponse(error_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if is_api_path(request):
        body = error_body("server_error", "A server error occurred.")
        return JsonResponse(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)
