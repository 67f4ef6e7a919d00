"""Request guards before any view runs, and the CSP header (rate limits: ``ratelimit.middleware``)."""

from __future__ import annotations

import io
from collections.abc import Callable

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.core.signals import setting_changed
from django.dispatch import receiver
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


#: The headers of the settings' policies, ``(policy, report-only policy)``, built once per process.
_default_policies: tuple[str, str] | None = None

#: Where ``csp.decorators`` leave a view's own policy on its response.
_RESPONSE_POLICY_ATTRS = (
    "_csp_config", "_csp_update", "_csp_replace", "_csp_config_ro", "_csp_update_ro", "_csp_replace_ro",
)  # fmt: skip


@receiver(setting_changed)
def _forget_policies(*, setting: str, **kwargs: object) -> None:
    global _default_policies
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        _default_policies = None


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's middleware, without rebuilding the same headers on every response.

    django-csp builds both policies from the settings for each response, about a tenth of a warm API
    request's CPU. A response that used no nonce and no per-view decorator gets exactly the settings'
    policies, so those are built once and set under django-csp's own rules (DEBUG error pages, exempt
    views, excluded prefixes, a header already set, the nonce refused afterwards). Any other response
    takes django-csp's path.
    """

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if getattr(request, "_csp_nonce", None) is not None or any(
            hasattr(response, name) for name in _RESPONSE_POLICY_ATTRS
        ):
            return super().process_response(request, response)
        if response.status_code in (500, 404) and settings.DEBUG:
            return response
        global _default_policies
        if _default_policies is None:
            _default_policies = (build_policy(), build_policy(report_only=True))
        policy, report_only = _default_policies
        _set_policy(request, response, HEADER, policy, "_csp_exempt", "CONTENT_SECURITY_POLICY")
        _set_policy(
            request, response, HEADER_REPORT_ONLY, report_only, "_csp_exempt_ro", "CONTENT_SECURITY_POLICY_REPORT_ONLY"
        )
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


def _set_policy(
    request: HttpRequest, response: HttpResponse, header: str, value: str, exempt: str, setting: str
) -> None:
    if not value or header in response or getattr(response, exempt, False) is not False:
        return
    prefixes = (getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES", None) or ()
    if not request.path_info.startswith(tuple(prefixes)):
        response[header] = value
