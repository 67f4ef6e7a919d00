"""Registries that higher apps fill from their ``AppConfig.ready()``.

``observability`` never imports a domain app: agents (for example) registers its health check and its
Prometheus collector here, and the health and metrics views read the registries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"


@dataclass(frozen=True)
class HealthResult:
    """What a health check returns: a status (healthy, degraded, unhealthy), a message, details."""

    status: str
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthCheck:
    name: str
    func: Callable[[], HealthResult]
    timeout: float = 2.0


_health_checks: dict[str, HealthCheck] = {}
_collectors: list[Any] = []


def register_health_check(name: str, func: Callable[[], HealthResult], *, timeout: float = 2.0) -> None:
    """Add (or replace) the component ``name`` in ``/health``. ``func`` must not raise to report trouble:
    it returns a ``HealthResult``; an exception or a timeout counts as unhealthy."""
    _health_checks[name] = HealthCheck(name=name, func=func, timeout=timeout)


def health_checks() -> dict[str, HealthCheck]:
    return dict(_health_checks)


def register_collector(collector: Any) -> None:
    """Add a prometheus_client custom collector (an object with ``collect()``) to ``/metrics``.

    Collectors computed at scrape time (gauges from the database) go here rather than into
    prometheus_client's default registry, which the multiprocess ``/metrics`` view does not read.
    """
    if collector not in _collectors:
        _collectors.append(collector)


def collectors() -> Iterable[Any]:
    return tuple(_collectors)
