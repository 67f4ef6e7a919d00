"""One error shape for every API error: ``{"error": {"code", "message", "details", "request_id"}}``.

``api_exception_handler`` wraps DRF's handler, which keeps ``Retry-After``, ``WWW-Authenticate`` and the
transaction rollback, and reshapes its answer. Django's ``ValidationError``, ``PermissionDenied`` and
``Http404`` are converted first (HackSoft example, api/exception_handlers.py). A database that is down
or does not answer (``OperationalError``, ``InterfaceError``) is a 503 ``database_unavailable`` with
``Retry-After``, wherever it is raised: in a DRF view here, anywhere else through ``handler500``
(a plain 503 page outside ``/api/``). Anything else stays an unhandled exception: a logged 500, never
a 400.
"""

from __future__ import annotations

import sys
from typing import Any

import structlog
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

from observability.context import get_request_id
from symphony import db

log = structlog.get_logger(__name__)


#: The details of a 403 raised without an explanation (Django's PermissionDenied, a plain DRF one):
#: the same keys as an explained denial (accounts.permissions.PermissionRequired), nothing named.
UNEXPLAINED_DENIAL = {"required": [], "project": None, "limited_by": "roles"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details, "request_id": get_request_id()}}


class RateLimited(exceptions.Throttled):
    default_code = "rate_limited"


_OUTCOME_UNKNOWN = (
    "The database stopped answering during the commit: the change may have been saved. Check before "
    "retrying (a task submission can be retried with the same idempotency_key)."
)


class DatabaseUnavailable(exceptions.APIException):
    """503: the database refused the connection, dropped it, or gave no answer within the bound."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "database_unavailable"
    default_detail = "The database is unavailable; try again shortly."

    def __init__(self, *, outcome_unknown: bool = False) -> None:
        super().__init__(_OUTCOME_UNKNOWN if outcome_unknown else None)
        self.wait = db.retry_after()  # DRF's handler turns it into Retry-After
        self.extra_details = {"outcome": "unknown"} if outcome_unknown else None


def is_database_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` means the database cannot be reached (down, restarting, stalled, too many clients).

    Django raises ``OperationalError`` for these (and for a lock or statement timeout, which a
    retry may also cure) and ``InterfaceError`` for a connection already closed. Integrity and
    programming errors are not among them: those stay 400s or bugs.
    """
    return isinstance(exc, OperationalError | InterfaceError)


def _log_database_unavailable(request: HttpRequest, exc: BaseException) -> None:
    # One line without a traceback: an outage would otherwise log one per request, each with its
    # stack; the first line of the driver's message says what happened (it holds no password).
    message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    log.warning(
        "database_unavailable", method=request.method, path=request.path, error=type(exc).__name__, message=message
    )


def database_unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 for ``exc`` (see ``is_database_unavailable``): the one error shape under ``/api/``, else
    a plain page. Logged here once, so Django's request logger does not log it again with a traceback."""
    _log_database_unavailable(request, exc)
    error = DatabaseUnavailable(outcome_unknown=db.outcome_unknown(exc))
    if is_api_path(request):
        response: HttpResponse = JsonResponse(
            error_body(error.default_code, str(error.detail), error.extra_details), status=error.status_code
        )
    else:
        page = (
            "<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1>"
            f"<p>{error.detail} (request id {get_request_id() or '-'})</p>"
        )
        response = HttpResponse(page, status=error.status_code, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(error.wait)
    response["Cache-Control"] = "no-store"
    response._has_been_logged = True  # django.utils.log.log_response: logged above, without the traceback
    return response


def _convert(exc: Exception) -> Exception:
    if is_database_unavailable(exc):
        return DatabaseUnavailable(outcome_unknown=db.outcome_unknown(exc))
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
    original, exc = exc, _convert(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django logs it and answers 500 (JSON for /api/, see handler500)
    if isinstance(exc, DatabaseUnavailable) and context.get("request") is not None:
        _log_database_unavailable(context["request"], original)
        response._has_been_logged = True  # see database_unavailable_response

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
        if code == "permission_denied" and details is None:
            details = UNEXPLAINED_DENIAL
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
        body = error_body("permission_denied", "You do not have permission to perform this action.", UNEXPLAINED_DENIAL)
        return JsonResponse(body, status=status.HTTP_403_FORBIDDEN)
    return defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request):
        return JsonResponse(error_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    """Django calls it inside the ``except`` of the failed request, so ``sys.exc_info()`` is the cause:
    a database outage raised outside a DRF view (middleware, sessions, the admin) becomes a 503."""
    exc = sys.exc_info()[1]
    if is_database_unavailable(exc):
        return database_unavailable_response(request, exc)
    if is_api_path(request):
        body = error_body("server_error", "A server error occurred.")
        return JsonResponse(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)
