"""Symphony's own Prometheus metrics, all named ``symphony_*``, and the ``/metrics`` exposition.

Counters live in prometheus_client's default registry, so under gunicorn with
``PROMETHEUS_MULTIPROC_DIR`` set they are written to per-process files and summed at scrape time by
``MultiProcessCollector``. Scrape-time gauges (build info, and whatever domain apps register through
``observability.registry.register_collector``) are computed by the process that answers the scrape and
are added in both modes.

Higher apps increment these directly, e.g. ``metrics.RATE_LIMIT_REJECTIONS.labels(scope="api").inc()``.
Labels must come from small fixed sets: never a user name, a path or a key prefix.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from observability import registry

log = structlog.get_logger(__name__)

API_KEY_AUTHENTICATIONS = Counter(
    "symphony_api_key_authentications_total",
    "API-key authentication attempts by outcome (success, or the rejection reason).",
    ["outcome"],
)
AUTH_FAILURES = Counter(
    "symphony_auth_failures_total",
    "Failed authentications by method (password, api_key).",
    ["method"],
)
RATE_LIMIT_REJECTIONS = Counter(
    "symphony_rate_limit_rejections_total",
    "Requests rejected with 429 by a rate limit, by scope.",
    ["scope"],
)
AUDIT_EVENTS = Counter(
    "symphony_audit_events_total",
    "Audit events recorded, by event type and severity.",
    ["event_type", "severity"],
)

# Reasons ApiKeyAuthentication gives (its error codes without the "api_key_" prefix). Anything else is
# folded into "failure", so a new code can never blow up the label set.
API_KEY_OUTCOMES = frozenset({"success", "malformed", "invalid", "revoked", "expired", "owner_inactive", "failure"})


def api_key_outcome(error_code: str | None) -> str:
    """Map an authentication error code (``api_key_revoked``) to a bounded label value."""
    if error_code is None:
        return "success"
    outcome = error_code.removeprefix("api_key_")
    return outcome if outcome in API_KEY_OUTCOMES else "failure"


class BuildInfoCollector:
    """``symphony_build_info{version, python}`` = 1, computed at scrape time (no multiprocess issue)."""

    def collect(self) -> Iterator[Metric]:
        from django.conf import settings

        gauge = GaugeMetricFamily(
            "symphony_build_info", "Symphony build information; the value is always 1.", labels=["version", "python"]
        )
        gauge.add_metric([str(getattr(settings, "VERSION", "unknown")), platform.python_version()], 1)
        yield gauge


class _Exposition:
    """Everything one scrape returns: process-local or multiprocess-summed metrics plus scrape-time ones.

    ``generate_latest`` only needs an object with ``collect()``; building a fresh ``CollectorRegistry``
    for the registry collectors would call their ``collect()`` an extra time just to learn names.
    """

    def __init__(self, sources: Iterable[Any]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            try:
                # Materialise first: a collector failing half-way must not leave a half-written family.
                metrics = list(source.collect())
            except Exception:
                log.exception("metrics_collector_failed", collector=type(source).__name__)
                continue
            yield from metrics


def exposition_sources() -> list[Any]:
    """The collectors of one scrape, honouring ``PROMETHEUS_MULTIPROC_DIR`` when it is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)
        base: Any = summed
    else:
        base = REGISTRY
    return [base, BuildInfoCollector(), *registry.collectors()]


def exposition() -> _Exposition:
    return _Exposition(exposition_sources())
