"""The API's one parser: JSON, bounded in size and nesting depth."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers, status


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


class BoundedJSONParser(parsers.JSONParser):
    """JSON only, at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes and ``SYMPHONY_MAX_JSON_DEPTH`` levels deep.

    DRF reads the request stream itself, so Django's body-size limit does not apply to it; this parser
    stops reading one byte past the limit (a chunked body has no Content-Length to refuse early). Deep
    nesting is refused with a 400 naming the problem, never a RecursionError 500.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        if stream is None:
            return None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(f"Request body too large: the limit is {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError(_too_deep()) from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        depth, has_nul = _inspect(data)
        if depth > settings.SYMPHONY_MAX_JSON_DEPTH:
            raise exceptions.ParseError(_too_deep())
        if has_nul:
            # PostgreSQL text cannot hold U+0000: refused here, not as a DataError 500 deep in a lookup.
            raise exceptions.ParseError("JSON strings may not contain NUL (U+0000) characters.")
        return data


def _too_deep() -> str:
    return f"JSON nested too deeply: at most {settings.SYMPHONY_MAX_JSON_DEPTH} levels are allowed."


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _inspect(data: Any) -> tuple[int, bool]:
    """Nesting depth of parsed JSON (a scalar is 0, ``[]`` is 1) and whether any string or key holds
    a NUL character; iteratively, so no recursion limit applies."""
    deepest, has_nul, stack = 0, False, [(data, 0)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, str):
            has_nul = has_nul or "\x00" in value
            continue
        if isinstance(value, dict):
            has_nul = has_nul or any("\x00" in key for key in value)
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest, has_nul
