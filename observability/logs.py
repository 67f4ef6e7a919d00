"""Logging: structlog for Symphony's own events, stdlib loggers (Django, gunicorn, libraries) through the
same ``ProcessorFormatter``, so every line has one shape: a JSON object in production, console output in
development.

``logging_config(level, fmt)`` is a plain ``dictConfig`` dict (settings use it for ``LOGGING``, the
gunicorn config for ``logconfig_dict``); it imports nothing from Django, so the gunicorn master can
use it before Django is set up. ``configure_structlog()`` runs once from ``ObservabilityConfig.ready()``.

Every line carries, when known: ``request_id`` (bound by the middleware through structlog's
contextvars), ``user`` and ``key_prefix`` (read from the current request without forcing a database
lookup), and ``trace_id``/``span_id`` (from the current OpenTelemetry span). ``redact`` runs last,
as a safety net: the code must not log secrets in the first place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

JSON, CONSOLE = "json", "console"
REDACTED = "[REDACTED]"

# Key names whose values are never logged, whatever they hold (compared lower-case, "-" as "_").
_SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "set_cookie",
        "password",
        "passwd",
        "api_key",
        "apikey",
        "x_api_key",
        "http_authorization",
        "http_cookie",
        "http_x_api_key",
        "secret",
        "secret_key",
        "token",
        "access_token",
        "refresh_token",
        "raw_key",
        "key_hash",
        "csrfmiddlewaretoken",
        "sessionid",
    }
)
# Anything shaped like a Symphony API key, wherever it appears in a string: keep the public prefix.
_API_KEY_SHAPE = re.compile(r"sym_([a-z0-9]{4,32})_[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*")


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if "earer" in value:
            value = _BEARER.sub(r"\1 " + REDACTED, value)
        if "sym_" in value:
            value = _API_KEY_SHAPE.sub(r"sym_\1_" + REDACTED, value)
        return value
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_sensitive(k) else _redact_value(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    return value


def _is_sensitive(key: Any) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in _SENSITIVE_KEYS


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: blank sensitive keys and mask API-key-shaped or bearer strings anywhere."""
    for key, value in list(event_dict.items()):
        if _is_sensitive(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str | Mapping | list | tuple):
            event_dict[key] = _redact_value(value)
    return event_dict


def add_request_identity(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Add ``user`` and ``key_prefix`` of the current request, if it already knows them.

    Authentication happens late (DRF authenticates inside the view), so this reads the request at log
    time instead of binding once. It never evaluates a lazy ``request.user``: that would hit the session
    store from inside a log call.
    """
    from observability.context import get_current_request

    request = get_current_request()
    if request is None:
        return event_dict
    user = request.__dict__.get("user")
    is_evaluated = user is not None and getattr(user, "_wrapped", True) is not _EMPTY
    if is_evaluated and getattr(user, "is_authenticated", False):
        event_dict.setdefault("user", user.get_username())
    prefix = getattr(request.__dict__.get("auth"), "prefix", None)
    if prefix:
        event_dict.setdefault("key_prefix", prefix)
    return event_dict


def add_trace_ids(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Add ``trace_id`` and ``span_id`` of the current OpenTelemetry span when there is one."""
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict


try:  # the sentinel of an unevaluated SimpleLazyObject
    from django.utils.functional import empty as _EMPTY
except ImportError:  # pragma: no cover - Django is a hard dependency
    _EMPTY = object()


def shared_processors() -> list[Any]:
    """Processors for both structlog events and foreign (stdlib) records."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_identity,
        add_trace_ids,
    ]


def make_formatter(fmt: str = JSON) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter every handler uses; ``fmt`` is ``json`` or ``console``."""
    if fmt == CONSOLE:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    else:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Never dict_tracebacks: its transformer logs every frame's local variables by default,
            # which put database passwords and request bodies in gunicorn's worker-crash lines.
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            redact,
            structlog.processors.JSONRenderer(default=str),
        ]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared_processors(), processors=final)


def logging_config(level: str = "INFO", fmt: str = JSON, *, gunicorn_access: bool | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: one stderr handler with the structlog formatter.

    ``gunicorn_access`` (only the gunicorn config passes it) also configures gunicorn's loggers, its
    access log on or silenced. Django's own ``LOGGING`` leaves gunicorn's loggers alone, so a worker
    keeps what the master's configuration decided.
    """
    if fmt not in (JSON, CONSOLE):
        raise ValueError(f"log format must be {JSON!r} or {CONSOLE!r}, got {fmt!r}")
    handler = {"handlers": ["console"], "level": level, "propagate": False}
    loggers: dict[str, Any] = {
        # Django logs every 4xx/5xx on django.request; the access line already says so.
        "django.request": {**handler, "level": "ERROR"},
        "django.server": {**handler, "level": "WARNING"},
    }
    if gunicorn_access is not None:
        loggers["gunicorn.error"] = handler
        loggers["gunicorn.access"] = {**handler, "level": level if gunicorn_access else "CRITICAL"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structlog": {"()": "observability.logs.make_formatter", "fmt": fmt}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structlog"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": loggers,
    }


def configure_structlog() -> None:
    """Route structlog through the stdlib loggers (and so through ``make_formatter``)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def level_enabled(logger_name: str, level: int = logging.INFO) -> bool:
    return logging.getLogger(logger_name).isEnabledFor(level)
