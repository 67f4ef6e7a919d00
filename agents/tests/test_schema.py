"""The OpenAPI schema of the agents views: generated without warnings, with the documented shapes."""

from __future__ import annotations

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

# Authentication extensions belong to accounts (ApiKeyAuthentication); every other warning is ours.
NOT_OURS = "could not resolve authenticator"


@pytest.fixture
def schema():
    GENERATOR_STATS.reset()
    yield SchemaGenerator().get_schema(request=None, public=True)
    GENERATOR_STATS.reset()


def test_it_generates_the_agents_schema_without_warnings(schema):
    ours = [
        message
        for message in [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
        if "agents/" in message and NOT_OURS not in message
    ]
    assert ours == []


def test_it_documents_the_protocol_and_the_shapes_clients_rely_on(schema):
    paths = schema["paths"]
    for path in (
        "/api/v1/agent/claim/",
        "/api/v1/agent/heartbeat/",
        "/api/v1/tasks/{id}/complete/",
        "/api/v1/orchestras/{id}/start/",
        "/api/v1/agents/{id}/execute/",
    ):
        assert "post" in paths[path], path
    components = schema["components"]["schemas"]
    assert set(components["ClaimedTask"]["properties"]) >= {
        "id",
        "kind",
        "input",
        "attempt",
        "lease_expires_at",
        "traceparent",
    }
    assert "api_key" in components["AgentCreated"]["properties"]
    assert components["Task"]["properties"]["priority"]["allOf"] == [{"$ref": "#/components/schemas/PriorityEnum"}]
    assert components["PriorityEnum"]["enum"] == ["low", "normal", "high", "urgent"]
