"""The API contract, checked over the live schema for every operation, and the API root and list
parameters (ordering, search, pagination) through the real stack."""

from __future__ import annotations

import re
from typing import Any

import pytest

from symphony.schema import AGENT_PROTOCOL, AGENT_TAG, CONFLICTS, EXTRA_ERRORS

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema(django_db_setup: Any, django_db_blocker: Any) -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _errors(operation: dict[str, Any]) -> set[str]:
    return {status for status in operation["responses"] if status >= "400"}


def test_it_gives_every_operation_a_summary_a_description_and_described_parameters(schema):
    operations = _operations(schema)
    missing = [
        f"{method.upper()} {path}"
        for path, method, op in operations
        if not op.get("summary") or not op.get("description")
    ]
    undescribed = [
        f"{op['operationId']}: {p['name']}"
        for _, _, op in operations
        for p in op.get("parameters", [])
        if not p.get("description")
    ]

    assert len(operations) >= 100
    assert missing == []
    assert undescribed == []
    assert len({op["summary"] for _, _, op in operations}) == len(operations)  # no two read the same


def test_it_names_actions_as_verbs(schema):
    ids = {op["operationId"] for _, _, op in _operations(schema)}

    assert {"tasks_cancel", "tasks_retry", "agent_claim", "agent_heartbeat", "api_keys_rotate"} <= ids
    assert {"orchestras_start", "audit_events_export", "tasks_list_events", "tasks_append_events"} <= ids
    standard = re.compile(r"_(list|create|retrieve|update|partial_update|destroy)$")
    # Only the standard actions end in a method word; a custom action never reads "<action>_create".
    for path, _method, op in _operations(schema):
        if standard.search(op["operationId"]):
            tail = path.rstrip("/").split("/")[-1]
            assert tail.startswith("{") or tail == path.strip("/").split("/")[2], (op["operationId"], path)


def test_it_gives_the_agent_protocol_its_own_tag_and_only_agent_key_security(schema):
    agent_ops = {op["operationId"]: op for _, _, op in _operations(schema) if AGENT_TAG in op.get("tags", [])}

    assert set(agent_ops) == AGENT_PROTOCOL
    for op in agent_ops.values():
        assert op["security"] == [{"AgentKeyBearer": []}, {"AgentKeyHeader": []}]
        assert ("403" in op["responses"] and "409" in op["responses"]) or op["operationId"].startswith("agent_")
    schemes = schema["components"]["securitySchemes"]
    assert schemes["AgentKeyBearer"]["scheme"] == "bearer"
    assert {"cookieAuth", "ApiKeyBearer", "ApiKeyHeader"} <= set(schemes)
    others = [op for _, _, op in _operations(schema) if AGENT_TAG not in op.get("tags", [])]
    assert all(not any("AgentKeyBearer" in s for s in op.get("security", [])) for op in others)


def test_it_lists_error_responses_as_they_can_occur(schema):
    for _path, method, op in _operations(schema):
        errors = _errors(op)
        name, params = op["operationId"], op.get("parameters", [])
        has_path = any(p["in"] == "path" for p in params)
        has_query = any(p["in"] == "query" for p in params)
        extra = EXTRA_ERRORS.get(name, {})
        assert "405" not in errors and "500" not in errors, name
        assert ("404" in errors) == (has_path or "404" in extra), name
        assert ("409" in errors) == (name in CONFLICTS), name
        assert ("400" in errors) == (method in ("post", "put", "patch") or has_query), name
        assert ({"413", "415"} <= errors) == (method in ("post", "put", "patch")), name
        assert {"429", "503"} <= errors, name
        assert "401" in errors, name  # sent credentials are checked, even where none are needed
        for status in errors:
            assert op["responses"][status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
    lists = [op for path, method, op in _operations(schema) if op["operationId"].endswith("_list")]
    assert lists and all("404" not in op["responses"] for op in lists)


def test_it_answers_403_only_where_a_permission_can_refuse(schema):
    ops = {op["operationId"]: op for _, _, op in _operations(schema)}

    # Anyone signed in may read these: no permission code, nothing to refuse.
    for name in ("me_retrieve", "permissions_list", "projects_list", "api_keys_list"):
        assert "403" not in ops[name]["responses"], name
    for name in ("tasks_list", "audit_events_list", "tasks_cancel", "api_keys_create", "tasks_list_children"):
        assert "403" in ops[name]["responses"], name
    assert "403" not in ops["api_root"]["responses"] and "security" not in ops["api_root"]


def test_it_names_the_error_shape_and_the_shared_headers_as_components(schema):
    components = schema["components"]

    assert components["schemas"]["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(components["schemas"]["ErrorBody"]["required"]) == {"code", "message", "details", "request_id"}
    assert not any("ErrorError" in name for name in components["schemas"])
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "X-Request-ID"} <= set(
        components["headers"]
    )
    claim = schema["paths"]["/api/v1/agent/claim/"]["post"]["responses"]
    assert claim["200"]["headers"]["X-RateLimit-Remaining"] == {"$ref": "#/components/headers/X-RateLimit-Remaining"}
    assert claim["429"]["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}
    assert claim["400"]["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}


def test_it_documents_ordering_and_search_on_the_lists_users_search(schema):
    def params(path: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in schema["paths"][path]["get"].get("parameters", [])}

    for path in ("/api/v1/tasks/", "/api/v1/agents/", "/api/v1/users/", "/api/v1/workflows/", "/api/v1/orchestras/"):
        assert {"ordering", "search"} <= set(params(path)), path
    assert "search" in params("/api/v1/audit-events/")
    assert "ordering" not in params("/api/v1/audit-events/")  # the cursor keeps the trail's own order
    ordering = params("/api/v1/tasks/")["ordering"]
    assert "-created_at" in ordering["description"]
    assert re.fullmatch(ordering["schema"]["pattern"], "-priority,created_at")
    assert not re.fullmatch(ordering["schema"]["pattern"], "input")
    assert "ordering" not in params("/api/v1/tasks/{id}/")  # an object is not a list


# --- through the real stack ------------------------------------------------------------------


def test_it_answers_the_api_root_with_every_resource(api):
    response = api.get("/api/v1/")

    assert response.status_code == 200
    body = response.json()
    assert body["resources"]["tasks"] == "http://testserver/api/v1/tasks/"
    assert {"agents", "api-keys", "audit-events", "me", "users", "workflows", "webhooks"} <= set(body["resources"])
    assert body["schema"] == "http://testserver/api/schema/"
    for url in body["resources"].values():
        assert url.startswith("http://testserver/api/v1/")


def test_it_orders_a_list_by_the_fields_asked(make_api):
    from agents.tests.factories import OrchestraFactory, TaskFactory

    api = make_api("super_admin")
    orchestra = OrchestraFactory(name="o")
    low = TaskFactory(orchestra=orchestra, kind="b-low", priority=0)
    high = TaskFactory(orchestra=orchestra, kind="a-high", priority=3)

    by_priority = api.get("/api/v1/tasks/", {"ordering": "-priority"})
    by_id = api.get("/api/v1/tasks/", {"ordering": "id"})

    assert by_priority.status_code == 200
    assert [t["id"] for t in by_priority.json()["results"]] == [high.pk, low.pk]
    assert [t["id"] for t in by_id.json()["results"]] == [low.pk, high.pk]


def test_it_refuses_an_unknown_ordering_naming_the_parameter(make_api):
    response = make_api("super_admin").get("/api/v1/tasks/", {"ordering": "-input"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_ordering"
    assert list(error["details"]) == ["ordering"]
    assert "-created_at" in error["details"]["ordering"][0]


def test_it_searches_tasks_and_users(make_api):
    from agents.tests.factories import OrchestraFactory, TaskFactory

    api = make_api("super_admin")
    orchestra = OrchestraFactory(name="o")
    wanted = TaskFactory(orchestra=orchestra, kind="summarise-report")
    TaskFactory(orchestra=orchestra, kind="translate")

    tasks = api.get("/api/v1/tasks/", {"search": "SUMMARISE"})
    users = api.get("/api/v1/users/", {"search": api.user.username})

    assert [t["id"] for t in tasks.json()["results"]] == [wanted.pk]
    assert [u["username"] for u in users.json()["results"]] == [api.user.username]


def test_it_refuses_search_where_a_list_offers_none(make_api):
    response = make_api("super_admin").get("/api/v1/budgets/", {"search": "x"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_query_parameter"
    assert list(response.json()["error"]["details"]) == ["search"]


def test_it_searches_the_audit_trail(make_api):
    import audit

    api = make_api("super_admin")
    audit.record("agent.created", resource_type="agent", resource_id="needle-42")

    response = api.get("/api/v1/audit-events/", {"search": "needle-42"})

    assert response.status_code == 200
    assert [e["resource_id"] for e in response.json()["results"]] == ["needle-42"]


@pytest.mark.parametrize(
    ("path", "param", "value"), [("/api/v1/tasks/", "page", "999"), ("/api/v1/audit-events/", "cursor", "zz")]
)
def test_it_answers_a_bad_page_or_cursor_with_a_400_naming_it(make_api, path, param, value):
    response = make_api("super_admin").get(path, {param: value})

    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == [param]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/tasks/", {"page_size": "lots"}, "page_size"),
        ("/api/v1/tasks/", {"page_size": "0"}, "page_size"),
        ("/api/v1/audit-events/", {"page_size": "-1"}, "page_size"),
        ("/api/v1/users/", {"is_active": "maybe"}, "is_active"),
    ],
)
def test_it_refuses_a_bad_page_size_or_boolean_instead_of_ignoring_it(make_api, path, params, field):
    response = make_api("super_admin").get(path, params)

    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == [field]


def test_it_caps_a_large_page_size_as_documented(make_api, schema):
    response = make_api("super_admin").get("/api/v1/permissions/", {"page_size": "100000"})
    page_size = next(
        p for p in schema["paths"]["/api/v1/permissions/"]["get"]["parameters"] if p["name"] == "page_size"
    )

    assert response.status_code == 200
    assert len(response.json()["results"]) == response.json()["count"]  # the whole catalog fits in 200
    assert page_size["schema"]["minimum"] == 1
    assert "capped" in page_size["description"]


def test_it_states_what_the_server_refuses_in_the_schema(schema):
    components = schema["components"]["schemas"]
    tasks = {p["name"]: p for p in schema["paths"]["/api/v1/tasks/"]["get"]["parameters"]}

    # Request bodies refuse unknown fields (symphony.serializers.InputSerializer).
    assert components["TaskSubmitRequest"]["additionalProperties"] is False
    assert components["PatchedAgentWriteRequest"]["additionalProperties"] is False
    # Numeric ids in paths are integers (a generated client takes an int), not digit strings.
    complete = schema["paths"]["/api/v1/tasks/{id}/complete/"]["post"]["parameters"]
    assert complete[0]["schema"]["type"] == "integer"
    # Integer filters refuse what a 64-bit column cannot hold (symphony.filters.FilterBackend).
    assert tasks["orchestra"]["schema"]["maximum"] == 2**63 - 1


def test_it_renders_the_ordering_and_search_controls_in_the_browsable_api(make_user):
    from django.test import Client

    client = Client()
    client.force_login(make_user("super_admin", username="browser"))

    page = client.get("/api/v1/tasks/", {"ordering": "-priority", "search": "x"}, headers={"Accept": "text/html"})
    refused = client.get("/api/v1/tasks/", {"ordering": "input"}, headers={"Accept": "text/html"})

    assert page.status_code == 200
    assert b"Ordering" in page.content and b"Search" in page.content
    assert refused.status_code == 400


def test_it_refuses_a_bad_key_even_on_the_public_root_as_documented(api, schema):
    response = api.get("/api/v1/", HTTP_AUTHORIZATION="Bearer sym_abcdefabcdef_" + "x" * 43)

    assert response.status_code == 401
    assert "401" in schema["paths"]["/api/v1/"]["get"]["responses"]
