"""OpenTelemetry tracing: Django, psycopg and Redis instrumented; the exporter chosen by ``OTEL_*`` only.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and off when none is set,
when ``OTEL_TRACES_EXPORTER=none`` or when ``OTEL_SDK_DISABLED=true``. The OTLP protocol comes from
``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the
default, or ``grpc``); the exporters read their own endpoint, headers, timeout and TLS variables.

``configure_tracing()`` runs once per process: after fork in each gunicorn worker (``post_fork`` in
``config/gunicorn.conf.py``; a span processor's export thread does not survive a fork), and from
``ObservabilityConfig.ready()`` everywhere else (runserver, management commands, tests).

For domain code: ``span(name, **attributes)`` (a cheap no-op when tracing is off),
``current_traceparent()`` to store a W3C ``traceparent`` with a task, and
``context_from_traceparent(tp)`` to continue that trace later (``span(name, context=ctx)``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = structlog.get_logger(__name__)

# Probes and scrapes every few seconds would drown the real traces.
DEFAULT_EXCLUDED_URLS = r"/health/(live|ready|startup)$,/metrics$"
_TRACER_NAME = "symphony"
_propagator = TraceContextTextMapPropagator()
_lock = threading.Lock()
_tracer: trace.Tracer | None = None
_provider: Any = None
_configured_pid: int | None = None
_NOOP = contextlib.nullcontext(trace.INVALID_SPAN)


# --- configuration ---------------------------------------------------------------------------------


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def exporter_name() -> str | None:
    """The exporter the ``OTEL_*`` variables ask for (``otlp``, ``console``), or None when tracing is off."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return None
    names = [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER").split(",") if n.strip()]
    if names:
        chosen = names[0]
        return None if chosen == "none" else chosen
    if _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def is_enabled_by_env() -> bool:
    return exporter_name() is not None


def otlp_protocol() -> str:
    return (
        _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    ).lower()


def build_exporter() -> Any:
    """The span exporter the environment names. Raises ``ValueError`` for an unsupported one."""
    name = exporter_name()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (use otlp, console or none)")
    protocol = otlp_protocol()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported (use http/protobuf or grpc)")
    return OTLPSpanExporter()


def build_provider(exporter: Any = None, *, batch: bool = True) -> Any:
    """A ``TracerProvider`` for Symphony's resource (``OTEL_SERVICE_NAME`` default ``symphony``,
    ``OTEL_RESOURCE_ATTRIBUTES`` honoured) exporting to ``exporter`` (default: ``build_exporter()``)."""
    from django.conf import settings
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attributes = {SERVICE_VERSION: getattr(settings, "VERSION", "unknown")}
    if not _env("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = "symphony"
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter = exporter if exporter is not None else build_exporter()
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


def instrument(provider: Any) -> None:
    """Instrument Django, psycopg and Redis with ``provider`` and route ``span()`` to it.

    Django's instrumentation inserts its middleware into ``settings.MIDDLEWARE``: call this before the
    WSGI handler builds its middleware chain (gunicorn's ``post_fork`` and ``AppConfig.ready`` both are).
    """
    global _tracer, _provider
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    excluded = _env("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or DEFAULT_EXCLUDED_URLS
    DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=excluded)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    _tracer = provider.get_tracer(_TRACER_NAME)


def uninstrument() -> None:
    """Undo ``instrument()`` (tests)."""
    global _tracer, _provider
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    DjangoInstrumentor().uninstrument()
    PsycopgInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    _tracer = None
    _provider = None


def configure_tracing() -> bool:
    """Set tracing up from the ``OTEL_*`` variables, once per process (a forked child sets it up
    again). Returns whether tracing is on. A bad exporter setting is logged, never fatal."""
    global _configured_pid
    with _lock:
        if _configured_pid == os.getpid():
            return _tracer is not None
        _configured_pid = os.getpid()
        if not is_enabled_by_env():
            return False
        try:
            provider = build_provider()
        except (ValueError, ImportError) as exc:
            log.error("tracing_not_configured", error=str(exc))
            return False
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        instrument(provider)
        log.info("tracing_configured", exporter=exporter_name(), protocol=otlp_protocol(), pid=os.getpid())
        return True


def is_enabled() -> bool:
    return _tracer is not None


def force_flush(timeout_millis: int = 5000) -> bool:
    return bool(_provider.force_flush(timeout_millis)) if _provider is not None else True


# --- helpers for domain code -----------------------------------------------------------------------


def span(name: str, *, context: Context | None = None, **attributes: Any) -> contextlib.AbstractContextManager:
    """A context manager opening span ``name`` as the current span, with ``attributes``.

    ``context`` (from ``context_from_traceparent``) makes the span a child of a stored trace. When
    tracing is off this returns a shared no-op manager yielding ``INVALID_SPAN`` (safe to call
    ``set_attribute`` on). Attribute values must be str, bool, int, float or sequences of those.
    """
    if _tracer is None:
        return _NOOP
    return _tracer.start_as_current_span(name, context=context, attributes=attributes or None)


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span, or ``""`` when there is no valid span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str | None) -> Context | None:
    """A context whose parent is the span ``traceparent`` names; None for an empty or malformed value."""
    if not traceparent:
        return None
    ctx = _propagator.extract({"traceparent": traceparent})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


@contextlib.contextmanager
def attached(ctx: Context | None) -> Iterator[None]:
    """Make ``ctx`` current for the block (e.g. a worker continuing a stored trace without a new span)."""
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
