"""OpenAPI postprocessing: the one error shape, documented once for every operation."""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = {
    "type": "object",
    "description": "The one error shape of every 4xx and 5xx answer of the API.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Stable snake_case code, e.g. validation_error."},
                "message": {"type": "string", "description": "Human-readable summary, naming the field."},
                "details": {"description": "Per-field messages or other structured detail; may be null."},
                "request_id": {"type": "string", "nullable": True, "description": "Echo of X-Request-ID."},
            },
            "required": ["code", "message", "details", "request_id"],
        }
    },
    "required": ["error"],
}

_RATE_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed in the current window.",
    "X-RateLimit-Remaining": "Requests left in the current window.",
    "X-RateLimit-Reset": "Seconds until the window resets.",
}

_BODY = frozenset({"post", "put", "patch"})
_WRITES = _BODY | {"delete"}

# status -> (description, the methods it applies to; None for all)
ERROR_RESPONSES: dict[str, tuple[str, frozenset[str] | None]] = {
    "400": ("Invalid input, an unknown query parameter, or malformed JSON.", None),
    "401": ("Missing or rejected credentials.", None),
    "403": ("Authenticated, but without the permission this action requires.", None),
    "404": ("No such resource (or not visible to the caller).", None),
    "405": ("Method not allowed on this resource.", None),
    "409": ("The resource's current state does not allow this change.", _WRITES),
    "413": ("Request body larger than the configured limit.", _BODY),
    "415": ("Request body is not application/json.", _BODY),
    "429": ("Rate limit exceeded; retry after Retry-After seconds.", None),
    "500": ("Unexpected server error; quote the request_id.", None),
    "503": ("The database (or, fail-closed, the rate limiter) is unavailable; retry after Retry-After seconds.", None),
}


def _header(description: str) -> dict[str, Any]:
    return {"schema": {"type": "integer"}, "description": description}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the ``Error`` component and the error responses.

    Responses an operation already documents are kept. Every operation also documents the
    ``X-RateLimit-*`` headers of its success answers and ``Retry-After`` on 429 and 503.
    """
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "put", "post", "patch", "delete", "head", "options", "trace"}:
                continue
            responses = operation.setdefault("responses", {})
            for response in responses.values():
                if isinstance(response, dict) and "$ref" not in response:
                    headers = response.setdefault("headers", {})
                    for name, description in _RATE_HEADERS.items():
                        headers.setdefault(name, _header(description))
            for code, (description, methods) in ERROR_RESPONSES.items():
                if methods is not None and method not in methods:
                    continue
                response = responses.setdefault(code, {"description": description, "content": ref})
                if code in ("429", "503"):
                    response.setdefault("headers", {})["Retry-After"] = _header("Seconds to wait before retrying.")
    return result
