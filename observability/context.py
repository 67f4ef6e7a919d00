"""Per-request context shared by logging, audit and metrics, held in contextvars.

The middleware sets it at the start of each request and clears it at the end, so code far from the
view (``audit.record()``, log processors) can read the request id and the current request without
having them passed down.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from contextvars import ContextVar

from django.conf import settings
from django.http import HttpRequest

_request_id: ContextVar[str | None] = ContextVar("symphony_request_id", default=None)
_request: ContextVar[HttpRequest | None] = ContextVar("symphony_request", default=None)

# A client-supplied X-Request-ID is kept only when it is short and made of safe characters;
# anything else could smuggle newlines or markup into logs and audit rows.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def sanitize_request_id(value: str | None) -> str:
    """Return ``value`` when it is a sane request id, else a freshly made one."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return new_request_id()


def get_request_id() -> str | None:
    return _request_id.get()


def get_current_request() -> HttpRequest | None:
    return _request.get()


def bind_request(request: HttpRequest | None, request_id: str | None) -> None:
    _request.set(request)
    _request_id.set(request_id)


def clear_request() -> None:
    _request.set(None)
    _request_id.set(None)


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP address.

    ``X-Forwarded-For`` is honoured only when the direct peer is listed in
    ``SYMPHONY_TRUSTED_PROXIES`` (IPs or CIDR networks); then the right-most address that is not
    itself a trusted proxy is the client. Otherwise the header is ignored: anyone can send it.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    trusted = getattr(settings, "SYMPHONY_TRUSTED_PROXIES", [])
    if not remote or not trusted or not _is_trusted(remote, trusted):
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _valid_ip(hop):
            break
        if not _is_trusted(hop, trusted):
            return hop
    return remote


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_trusted(ip: str, trusted: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
