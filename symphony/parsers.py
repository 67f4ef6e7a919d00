"""The API's one parser: JSON, bounded in size and nesting depth."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers, status


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


class UnstorableText(exceptions.ValidationError):
    """A JSON string or key no database can store: 400 ``parse_error``, naming where it is."""

    default_code = "parse_error"


class BoundedJSONParser(parsers.JSONParser):
    """JSON only, at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes and ``SYMPHONY_MAX_JSON_DEPTH`` levels deep.

    DRF reads the request stream itself, so Django's body-size limit does not apply to it; this parser
    stops reading one byte past the limit (a chunked body has no Content-Length to refuse early). Deep
    nesting is refused with a 400 naming the problem, never a RecursionError 500. Strings and keys that
    cannot be stored (NUL, lone UTF-16 surrogates) are refused with a 400 naming their path
    (``input.items[2]``), wherever they are in the document.
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
            text = raw.decode(encoding)
        except LookupError:  # a registered codec that is not a text encoding: charset=rot13, hex
            raise exceptions.UnsupportedMediaType(
                media_type or "application/json", detail=f"Unsupported charset {encoding!r}: send UTF-8 JSON."
            ) from None
        except ValueError as exc:  # UnicodeDecodeError
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError(_too_deep()) from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        depth, has_unstorable = _inspect(data)
        if depth > settings.SYMPHONY_MAX_JSON_DEPTH:
            raise exceptions.ParseError(_too_deep())
        if has_unstorable:
            raise UnstorableText(_locate_unstorable(data))
        return data


def _too_deep() -> str:
    return f"JSON nested too deeply: at most {settings.SYMPHONY_MAX_JSON_DEPTH} levels are allowed."


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: What no text column or jsonb value can hold. PostgreSQL text refuses U+0000 (a DataError 500 deep in
#: a lookup). A lone surrogate (``"\\ud800"``: JSON allows the escape, Python decodes it) cannot be
#: encoded as UTF-8: psycopg raises UnicodeEncodeError, jsonb refuses the escape, and SQLite stores
#: it, after which every answer rendering that row fails. A valid pair (``"\\ud83d\\ude00"``) decodes
#: to one character and is not matched.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_message(text: str) -> str:
    if "\x00" in text:
        return "JSON strings may not contain NUL (U+0000) characters."
    return "JSON strings may not contain lone UTF-16 surrogates (\\ud800-\\udfff without their pair)."


def _inspect(data: Any) -> tuple[int, bool]:
    """Nesting depth of parsed JSON (a scalar is 0, ``[]`` is 1) and whether any string or key holds
    unstorable text; iteratively, so no recursion limit applies."""
    deepest, bad, stack = 0, False, [(data, 0)]
    search = UNSTORABLE.search
    while stack:
        value, level = stack.pop()
        if isinstance(value, str):
            bad = bad or search(value) is not None
            continue
        if isinstance(value, dict):
            bad = bad or any(search(key) for key in value)
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest, bad


def _locate_unstorable(data: Any) -> dict[str, list[str]]:
    """``{path: [message]}`` for the first unstorable string or key, in document order.

    The path names the top-level field first (``input``, ``input.text``, ``input.items[2]``); text
    at the top level itself is ``non_field_errors``. Keys in the path are shown with unstorable
    characters escaped, so the answer itself can be encoded.
    """
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if UNSTORABLE.search(value):
                return {path or "non_field_errors": [unstorable_message(value)]}
            continue
        if isinstance(value, dict):
            for key in value:
                if UNSTORABLE.search(key):
                    return {_join(path, key): [unstorable_message(key).replace("strings", "keys")]}
            stack.extend((child, _join(path, key)) for key, child in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((child, f"{path}[{index}]") for index, child in reversed(list(enumerate(value))))
    return {"non_field_errors": [unstorable_message("")]}  # not reached: _inspect found something


def _join(path: str, key: str) -> str:
    key = key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return f"{path}.{key}" if path else key
