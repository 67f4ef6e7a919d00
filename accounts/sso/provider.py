"""The OpenID Connect provider: is SSO configured, its discovered metadata, and why a login failed."""

from __future__ import annotations

import time
from typing import Any

import requests
import structlog
from django.conf import settings

log = structlog.get_logger(__name__)

# Per process: the metadata is configuration, safe to be a little stale, and a per-process copy
# keeps a provider outage from touching logins already past discovery.
_metadata: dict[str, tuple[float, dict[str, Any]]] = {}
_REQUIRED = ("authorization_endpoint", "token_endpoint", "jwks_uri")


class SsoFailure(Exception):
    """A single sign-on attempt refused; ``reason`` is a stable snake_case code (audited)."""

    status = 403

    def __init__(self, reason: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        if status is not None:
            self.status = status


def is_configured() -> bool:
    """Whether OIDC login is on: an issuer and a client id are set."""
    return bool(settings.SYMPHONY_OIDC_ISSUER and settings.SYMPHONY_OIDC_CLIENT_ID)


def http_get(url: str, **kwargs: Any) -> requests.Response:
    """GET from the provider with the configured timeout. Raises ``SsoFailure`` (502) when it fails."""
    try:
        response = requests.get(url, timeout=settings.SYMPHONY_OIDC_TIMEOUT, **kwargs)
        response.raise_for_status()
    except requests.RequestException as exc:
        log.warning("sso_provider_request_failed", url=url, error=str(exc))
        raise SsoFailure("provider_unavailable", "The identity provider could not be reached.", status=502) from exc
    return response


def provider_metadata() -> dict[str, Any]:
    """The provider's ``/.well-known/openid-configuration``, fetched on first use and cached for
    ``SYMPHONY_OIDC_DISCOVERY_CACHE_SECONDS``. Raises ``SsoFailure`` when it cannot be fetched or
    does not describe the configured issuer."""
    issuer = settings.SYMPHONY_OIDC_ISSUER
    cached = _metadata.get(issuer)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    response = http_get(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
    try:
        metadata = response.json()
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict) or any(not isinstance(metadata.get(k), str) for k in _REQUIRED):
        raise SsoFailure("bad_discovery", "The identity provider's discovery document is incomplete.", status=502)
    # OpenID Connect Discovery 1.0, section 4.3: the issuer in the document must be the one asked.
    if metadata.get("issuer") != issuer:
        raise SsoFailure(
            "issuer_mismatch", "The identity provider's discovery document names another issuer.", status=502
        )
    _metadata[issuer] = (time.monotonic() + settings.SYMPHONY_OIDC_DISCOVERY_CACHE_SECONDS, metadata)
    return metadata


def forget_metadata() -> None:
    """Drop the cached metadata (tests, or after the provider rotated its endpoints)."""
    _metadata.clear()
