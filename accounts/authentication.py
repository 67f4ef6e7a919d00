"""DRF authentication with API keys: ``Authorization: Bearer sym_...`` or ``X-API-Key: sym_...``."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts import keys
from accounts.models import ApiKey


class ApiKeyAuthFailed(exceptions.AuthenticationFailed):
    """A presented API key was rejected; ``default_code`` says why (never which part was wrong)."""


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate with an API key.

    Returns ``None`` for requests without one of our headers (so session auth may try), and raises
    ``AuthenticationFailed`` (401 with ``WWW-Authenticate``) for a malformed, unknown, expired or
    revoked key, or one whose owner is inactive.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw = self.get_raw_key(request)
        if raw is None:
            return None
        key = self.resolve(raw)
        user = key.owner
        user._api_key_scopes = frozenset(key.scopes_codes)
        self.touch(key)
        return user, key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'

    @staticmethod
    def get_raw_key(request: Request) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            return value.strip()
        api_key = request.META.get("HTTP_X_API_KEY")
        return api_key.strip() if api_key is not None else None

    @staticmethod
    def resolve(raw: str) -> ApiKey:
        prefix = keys.parse_prefix(raw)
        if prefix is None:
            raise _fail("api_key_malformed", "Malformed API key.")
        key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
        if key is None or not keys.matches(raw, key.key_hash):
            raise _fail("api_key_invalid", "Invalid API key.")
        if key.revoked_at is not None:
            raise _fail("api_key_revoked", "This API key has been revoked.")
        if key.is_expired:
            raise _fail("api_key_expired", "This API key has expired.")
        if not key.owner.is_active:
            raise _fail("api_key_owner_inactive", "The owner of this API key is inactive.")
        key.scopes_codes = list(key.scopes.values_list("code", flat=True))
        return key

    @staticmethod
    def touch(key: ApiKey) -> None:
        """Record last use at most once a minute, so hot keys do not write on every request."""
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() >= 60:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now


def _fail(code: str, message: str) -> ApiKeyAuthFailed:
    exc = ApiKeyAuthFailed(message, code=code)
    exc.default_code = code
    return exc
