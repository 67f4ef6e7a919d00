"""Refusing webhook URLs that reach inside the network (server-side request forgery).

Checked when a webhook is created or its URL changed, and again at every delivery against the
addresses the name resolves to *then* (a DNS answer may change: rebinding). The sender connects to
the address it checked, never resolving twice. ``SYMPHONY_WEBHOOK_ALLOW_PRIVATE=true`` lifts the
refusal (tests, and installs whose receivers are internal).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

# Cloud metadata endpoints not all covered by "not global" (AWS IPv6 IMDS is in fd00::/8, which is).
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UnsafeWebhookUrl(ValueError):
    """The URL is malformed, not http(s), does not resolve, or resolves to a non-public address."""


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and ip not in _METADATA


def parse(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path_with_query)``. Raises ``UnsafeWebhookUrl``."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnsafeWebhookUrl("Only http and https URLs with a host are accepted.")
    if parts.username or parts.password:
        raise UnsafeWebhookUrl("Credentials in the URL are not accepted.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeWebhookUrl("The port is not valid.") from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def resolve_safe(url: str) -> tuple[str, str, int, str, str]:
    """``(scheme, host, port, path, ip)``: the first address of the host, checked. Raises
    ``UnsafeWebhookUrl`` when any address the name resolves to is private, loopback, link-local,
    metadata or otherwise not public (unless allowed by settings), or when it does not resolve."""
    scheme, host, port, path = parse(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeWebhookUrl(f"The host {host!r} does not resolve.") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not settings.SYMPHONY_WEBHOOK_ALLOW_PRIVATE:
        refused = [str(ip) for ip in addresses if not _is_public(ip)]
        if refused:
            raise UnsafeWebhookUrl(
                f"The host {host!r} resolves to a non-public address ({refused[0]}): loopback, private, "
                "link-local and metadata addresses are refused."
            )
    return scheme, host, port, path, str(addresses[0])
