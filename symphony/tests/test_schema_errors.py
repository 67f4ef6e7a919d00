"""The OpenAPI schema documents the one error shape and the rate-limit headers once, for every operation."""

from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def _schema(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


@pytest.mark.urls("symphony.tests.urls")
def test_it_documents_the_error_component_and_responses(api):
    schema = _schema(api)
    error = schema["components"]["schemas"]["Error"]
    listing = schema["paths"]["/api/test/catalog/"]["get"]["responses"]
    echo = schema["paths"]["/api/test/echo/"]["post"]["responses"]

    assert error["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert schema["components"]["schemas"]["ErrorBody"]["required"] == ["code", "message", "details", "request_id"]
    # A public list: query parameters are validated, credentials only when sent (no object, no body).
    assert sorted(s for s in listing if s >= "400") == ["400", "401", "429", "503"]
    for status in ("400", "429", "503"):
        assert listing[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert sorted(s for s in echo if s >= "400") == ["400", "401", "403", "413", "415", "429", "503"]
    assert listing["429"]["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}
    assert "Retry-After" in listing["503"]["headers"]
    assert set(listing["200"]["headers"]) >= {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


def test_it_generates_a_valid_schema_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))

    assert "Error:" in (tmp_path / "schema.yml").read_text()
