"""Health probes and the Prometheus endpoint.

- ``/health/live``: the process answers. Touches nothing external (also answered by ``ProbeMiddleware``
  before sessions, auth and host validation, so a kubelet probing the pod IP gets it too).
- ``/health/ready``: database ``SELECT 1``, cache set/get, migrations applied; 503 naming what failed,
  200 ``degraded`` naming what is impaired but served around (the cache while failing open).
- ``/health/startup``: 200 once ``symphony/wsgi.py`` finished loading the application.
- ``/health``: every component with status, message and timing for callers with ``system:monitor`` or
  from private networks; everyone else gets the overall status alone.
- ``/metrics``: Prometheus text format, for private networks or ``Authorization: Bearer $METRICS_TOKEN``.
"""

from __future__ import annotations

import hmac
import ipaddress

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from observability import health, metrics
from observability.context import client_ip
from observability.registry import DEGRADED, UNHEALTHY

log = structlog.get_logger(__name__)
NO_STORE = "no-store"
# Loopback, RFC 1918 and IPv6 unique-local: where node agents, sidecars and Prometheus live.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)


def is_private_client(request: HttpRequest) -> bool:
    """True when the client (``client_ip``, proxy-aware) is on loopback, RFC 1918 or a ULA network."""
    ip = client_ip(request)
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in PRIVATE_NETWORKS)


def _json(body: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = NO_STORE
    return response


def _probe_failed(body: dict) -> JsonResponse:
    response = _json(body, status=503)
    # A failing probe is an answer, not a server error: Django would log an ERROR line for each 503 that
    # kubelets and load balancers read during every start and outage (the view logs its own warning).
    response._has_been_logged = True
    return response


def live(request: HttpRequest) -> HttpResponse:
    """The process is up. Touches nothing external."""
    return _json({"status": "ok"})


def startup(request: HttpRequest) -> HttpResponse:
    """200 once the WSGI application finished loading, 503 before."""
    if health.is_boot_completed():
        return _json({"status": "ok"})
    return _probe_failed({"status": "starting"})


def ready(request: HttpRequest) -> HttpResponse:
    """Database, cache and migrations; 503 with the failing components named, 200 when degraded."""
    results = health.run_checks(health.READY_CHECKS)
    failing = [r.name for r in results if r.status == UNHEALTHY]
    if failing:
        log.warning("not_ready", failing=failing, checks={r.name: r.message for r in results if r.name in failing})
        body = {"status": "unavailable", "failing": failing}
        if is_private_client(request):  # error texts may name hosts and ports: not for the internet
            body["checks"] = {r.name: r.message for r in results if r.status == UNHEALTHY}
        return _probe_failed(body)
    degraded = [r.name for r in results if r.status == DEGRADED]
    if degraded:  # still serving (e.g. from the database while the cache is down): stay in service
        body = {"status": "degraded", "degraded": degraded}
        if is_private_client(request):
            body["checks"] = {r.name: r.message for r in results if r.status == DEGRADED}
        return _json(body)
    return _json({"status": "ok"})


class HealthView(APIView):
    """Every registered component. Details for ``system:monitor`` or private networks only.

    A DRF view so that API keys authenticate here exactly as on ``/api/v1/`` (the classes come from
    settings); it is open to anyone (``public``), and decides inside how much to show.
    """

    required_perms = {"GET": "public"}  # accounts.permissions.PUBLIC (observability cannot import accounts)
    schema = None  # an operational endpoint, not part of the API schema

    def get(self, request: Request) -> Response:
        results = health.run_checks(health.full_checks())
        status = health.overall(results)
        body: dict = {"status": status}
        if self._may_see_details(request):
            body |= {
                "version": settings.VERSION,
                "uptime_seconds": health.uptime_seconds(),
                "components": {r.name: r.as_dict() for r in results},
            }
        response = Response(body, status=503 if status == UNHEALTHY else 200)
        response["Cache-Control"] = NO_STORE
        return response

    @staticmethod
    def _may_see_details(request: Request) -> bool:
        if settings.SYMPHONY_HEALTH_DETAILS_ALLOW_PRIVATE and is_private_client(request):
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("system:monitor"))


def _metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
        return True
    return settings.SYMPHONY_METRICS_ALLOW_PRIVATE and is_private_client(request)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition: multiprocess-summed under gunicorn, plus scrape-time collectors."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    if not _metrics_allowed(request):
        response = HttpResponse("metrics are available to private networks or with the metrics token\n", status=403)
        response["Content-Type"] = "text/plain; charset=utf-8"
        return response
    response = HttpResponse(generate_latest(metrics.exposition()), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = NO_STORE
    return response
