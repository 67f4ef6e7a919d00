"""Teach drf-spectacular about API-key authentication (bearer token or ``X-API-Key`` header)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Either header works, so the requirement is one OR the other (two separate requirements)."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = ["ApiKeyBearer", "ApiKeyHeader"]
    priority = 1

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "sym_<prefix>_<secret>",
                "description": "An API key as `Authorization: Bearer sym_<prefix>_<secret>`.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "The same API key in the `X-API-Key` header.",
            },
        ]


def register() -> None:
    """Importing this module registers the extension; called from ``AccountsConfig.ready()``."""
