"""The OpenAPI schema describes the audit endpoints completely and without drf-spectacular warnings."""

from __future__ import annotations

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


@pytest.fixture
def schema_and_warnings():
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    warnings = [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
    GENERATOR_STATS.reset()
    return schema, warnings


def test_it_generates_the_audit_paths_without_warnings(schema_and_warnings):
    schema, warnings = schema_and_warnings
    validate_schema(schema)
    # Only warnings raised from audit code count here (other apps test their own endpoints).
    # The authenticator one belongs to accounts' ApiKeyAuthentication, not to these views.
    ours = [w for w in warnings if ("AuditEvent" in w or "audit/" in w) and "resolve authenticator" not in w]
    assert ours == []
    assert {"/api/v1/audit-events/", "/api/v1/audit-events/{id}/", "/api/v1/audit-events/export/"} <= set(
        schema["paths"]
    )


def test_it_documents_the_export_format_filters_and_media_types(schema_and_warnings):
    operation = schema_and_warnings[0]["paths"]["/api/v1/audit-events/export/"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["format"]["schema"]["enum"] == ["csv", "json", "jsonl"]
    assert {"type", "severity", "outcome", "actor", "since", "until", "request_id"} <= set(params)
    assert "cursor" not in params
    assert set(operation["responses"]["200"]["content"]) == {"text/csv", "application/json", "application/jsonl"}


def test_it_documents_cursor_pagination_on_the_list(schema_and_warnings):
    operation = schema_and_warnings[0]["paths"]["/api/v1/audit-events/"]["get"]
    assert {"cursor", "page_size", "type", "since"} <= {p["name"] for p in operation["parameters"]}
