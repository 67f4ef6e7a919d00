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

What keeps secrets out of the lines:

- Tracebacks carry no local variables (structlog's ``dict_tracebacks`` would log every frame's: the
  database password from psycopg's connection parameters, a user's password from a request body).
- Django's request logger passes the request object: only its method and path (no query string, no
  body) are written.
- ``redact`` blanks values under sensitive key names, masks API keys, bearer tokens and passwords in
  URLs (``postgres://user:[REDACTED]@host``), and replaces every secret value this process was
  configured with (``DATABASE_URL``'s and ``REDIS_URL``'s passwords, ``SECRET_KEY``, ``*_PASSWORD``,
  ``*_SECRET``, ``*_TOKEN`` variables and their ``*_FILE`` contents) wherever it appears in a string.
- ``django.security.DisallowedHost`` (a request for a host not in ``ALLOWED_HOSTS``, which any
  scanner sends) is a one-line warning, not an error with a traceback.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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
        "database_url",
        "redis_url",
        "dsn",
        "conninfo",
        "passphrase",
        "private_key",
        "client_secret",
        "metrics_token",
    }
)
# ... and any key ending like these (new_password, oidc_client_secret, session_token).
_SENSITIVE_SUFFIXES = ("_password", "_passwd", "_secret", "_token", "_api_key")
# Anything shaped like a Symphony API key, wherever it appears in a string: keep the public prefix.
_API_KEY_SHAPE = re.compile(r"sym_([a-z0-9]{4,32})_[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*")
# user:password@ in a URL (postgres://, redis://, https://, ...): keep the user, hide the password.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)[^@\s]+(@)")
# Environment variables whose values are secrets (and their NAME_FILE twins).
_SECRET_ENV = re.compile(r"(^|_)(PASSWORD|PASSWD|SECRET|TOKEN|SECRET_KEY|API_KEY)$")
_URL_ENV = ("DATABASE_URL", "REDIS_URL")
_MIN_SECRET_LENGTH = 6  # shorter values would blank ordinary words


def configured_secrets(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """Secret values this process was configured with, from the environment (``os.environ`` by default).

    The passwords of ``DATABASE_URL`` and ``REDIS_URL`` (raw and percent-decoded), and the values of
    variables named ``*_PASSWORD``, ``*_SECRET``, ``*_TOKEN``, ``SECRET_KEY``, ``*_API_KEY``, or the
    contents of the files their ``*_FILE`` variants name.
    """
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    for name in _URL_ENV:
        value = environ.get(name, "")
        try:
            password = urlsplit(value).password if "@" in value else None
        except ValueError:
            password = None
        if password:
            found.update({password, unquote(password)})
    for name, value in environ.items():
        if name.endswith("_FILE") and _SECRET_ENV.search(name[: -len("_FILE")]):
            try:
                path = Path(value)
                value = path.read_text().strip() if path.is_file() and path.stat().st_size < 65536 else ""
            except (OSError, UnicodeDecodeError):
                value = ""
        elif not _SECRET_ENV.search(name):
            continue
        if value:
            found.add(value)
    return frozenset(secret for secret in found if len(secret) >= _MIN_SECRET_LENGTH)


_secrets: frozenset[str] = frozenset()


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if "earer" in value:
            value = _BEARER.sub(r"\1 " + REDACTED, value)
        if "sym_" in value:
            value = _API_KEY_SHAPE.sub(r"sym_\1_" + REDACTED, value)
        if "://" in value:
            value = _URL_PASSWORD.sub(r"\1" + REDACTED + r"\2", value)
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_sensitive(k) else _redact_value(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    return value


def _is_sensitive(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    key = key.lower().replace("-", "_")
    return key in _SENSITIVE_KEYS or key.endswith(_SENSITIVE_SUFFIXES)


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: blank sensitive keys and mask API-key-shaped or bearer strings anywhere."""
    for key, value in list(event_dict.items()):
        if _is_sensitive(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str | Mapping | list | tuple):
            event_dict[key] = _redact_value(value)
    return event_dict


def describe_request(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Replace a request object (Django's request logger passes one) by its method and path.

    Its ``repr`` would carry the query string; nothing of it, body included, is logged otherwise.
    """
    request = event_dict.get("request")
    if request is not None and not isinstance(request, str) and hasattr(request, "META"):
        event_dict["request"] = f"{getattr(request, 'method', '')} {getattr(request, 'path', '')}".strip()
    return event_dict


class DowngradeToWarning(logging.Filter):
    """Log a record as a one-line warning: level WARNING, no traceback.

    For ``django.security.DisallowedHost``: a Host header not in ``ALLOWED_HOSTS`` is what scanners
    send all day; Django logs it as an error with the whole stack, which nobody must act on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


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
        describe_request,
        add_request_identity,
        add_trace_ids,
    ]


def make_formatter(fmt: str = JSON) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter every handler uses; ``fmt`` is ``json`` or ``console``.

    Also reads this process's configured secrets (``configured_secrets``) for ``redact``.
    """
    global _secrets
    _secrets = configured_secrets()
    if fmt == CONSOLE:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # plain text traceback, no locals
            redact,
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ]
    else:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Frames without their local variables: those hold passwords, keys and request bodies.
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
        "django.security.DisallowedHost": {**handler, "level": "WARNING", "filters": ["warning_only"]},
    }
    if gunicorn_access is not None:
        loggers["gunicorn.error"] = handler
        loggers["gunicorn.access"] = {**handler, "level": level if gunicorn_access else "CRITICAL"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structlog": {"()": "observability.logs.make_formatter", "fmt": fmt}},
        "filters": {"warning_only": {"()": "observability.logs.DowngradeToWarning"}},
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
