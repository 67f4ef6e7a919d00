"""The OpenAPI contract, decided in one place: names, summaries, security and error responses.

``AutoSchema`` (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``) gives every operation:

- an operation id that reads as a verb: standard actions keep drf-spectacular's ``<resource>_<action>``
  (``tasks_list``, ``tasks_create``); a custom action is ``<resource>_<action>`` without a method suffix
  (``tasks_cancel``, ``agent_claim``), and the few that share a path with another method are named in
  ``OPERATION_IDS`` (``tasks_list_events`` / ``tasks_append_events``);
- a summary (``SUMMARIES`` for custom actions, a template for standard ones) and a description (the
  method's docstring, else a sentence for the standard action followed by the view's docstring);
- the ``agent-protocol`` tag and only the agent-key security schemes for what agents call (``AGENT_PROTOCOL``,
  or ``@extend_schema(tags=[AGENT_TAG])`` on a view), never cookie auth;
- the error responses that can really occur, from what the operation is: 400 where a body or query
  parameters are validated, 401 (even when public: sent credentials are checked), 403 where a permission
  code, an agent key or CSRF applies,
  404 where the path names an object, 409 where ``CONFLICTS`` names a state rule, 413/415 where a body is
  read, 429 (rate limit) and 503 (database or rate limiter down) everywhere. Never 405 on an allowed
  method, never 404 on a list.

``postprocess`` (a drf-spectacular postprocessing hook) adds the shared components: the ``Error`` and
``ErrorBody`` schemas, the ``X-RateLimit-*``, ``Retry-After`` and ``X-Request-ID`` headers, the tag
descriptions, and a description for any parameter still without one.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular import openapi
from rest_framework.generics import GenericAPIView
from rest_framework.serializers import ListSerializer

from symphony.filters import INT64  # beyond it a filter or a page size answers 400

AGENT_TAG = "agent-protocol"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
_STANDARD_ACTIONS = {"list", "create", "retrieve", "update", "partial_update", "destroy"}
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_UNSAFE_METHODS = _BODY_METHODS | {"DELETE"}

#: Path segment -> (singular, plural), for summaries and parameter descriptions.
RESOURCES: dict[str, tuple[str, str]] = {
    "agents": ("agent", "agents"),
    "api-keys": ("API key", "API keys"),
    "approvals": ("approval", "approvals"),
    "audit-events": ("audit event", "audit events"),
    "budgets": ("budget", "budgets"),
    "concurrency-limits": ("concurrency limit", "concurrency limits"),
    "orchestras": ("orchestra", "orchestras"),
    "permissions": ("permission", "permissions"),
    "projects": ("project", "projects"),
    "roles": ("role", "roles"),
    "schedules": ("schedule", "schedules"),
    "tasks": ("task", "tasks"),
    "users": ("user", "users"),
    "webhook-deliveries": ("webhook delivery", "webhook deliveries"),
    "webhooks": ("webhook", "webhooks"),
    "workflows": ("workflow run", "workflow runs"),
}

_STANDARD_SUMMARIES = {
    "list": "List {plural}",
    "create": "Create {a} {singular}",
    "retrieve": "Get {a} {singular}",
    "update": "Replace {a} {singular}",
    "partial_update": "Update {a} {singular}",
    "destroy": "Delete {a} {singular}",
}
_STANDARD_DESCRIPTIONS = {
    "list": "The {plural} the caller may see, one page at a time; the query parameters filter, search and order.",
    "create": "Create {a} {singular} from the body; unknown body fields are refused (400 naming them).",
    "retrieve": "One {singular}, by the identifier in the path.",
    "update": "Replace the {singular}'s writable fields (all required); unknown body fields are refused.",
    "partial_update": "Change only the fields sent; unknown body fields are refused.",
    "destroy": "Delete the {singular}. Answers 204 with no body.",
}

#: (method, path) -> operation id, where the custom-action rule would collide or read badly.
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/"): "api_root",
    ("GET", "/api/v1/access/check/"): "access_check",
    ("GET", "/api/v1/usage/"): "usage_report",
    ("GET", "/api/v1/tasks/{id}/events/"): "tasks_list_events",
    ("POST", "/api/v1/tasks/{id}/events/"): "tasks_append_events",
    ("GET", "/api/v1/tasks/{id}/children/"): "tasks_list_children",
    ("POST", "/api/v1/tasks/{id}/children/"): "tasks_create_children",
    ("POST", "/api/v1/tasks/{id}/approval/"): "tasks_request_approval",
    ("GET", "/api/v1/schedules/{id}/firings/"): "schedules_list_firings",
}

#: Operation id -> summary, for everything that is not a standard action.
SUMMARIES: dict[str, str] = {
    "api_root": "List the API's resources",
    "me_retrieve": "Who am I",
    "access_check": "Explain whether a user holds a permission",
    "usage_report": "Sum LLM usage",
    "agent_heartbeat": "Report an agent's liveness",
    "agent_claim": "Claim pending tasks",
    "agent_complete": "Complete several held tasks at once",
    "agents_execute": "Submit a task to one agent",
    "api_keys_rotate": "Rotate an API key",
    "api_keys_revoke": "Revoke an API key",
    "approvals_approve": "Approve a pending approval",
    "approvals_reject": "Reject a pending approval",
    "audit_events_export": "Export audit events (streamed)",
    "orchestras_start": "Start an orchestra",
    "orchestras_pause": "Pause an orchestra",
    "orchestras_resume": "Resume an orchestra",
    "orchestras_stop": "Stop an orchestra",
    "orchestras_add_agents": "Add agents to an orchestra",
    "orchestras_remove_agents": "Remove agents from an orchestra",
    "schedules_pause": "Pause a schedule",
    "schedules_resume": "Resume a schedule",
    "schedules_run_now": "Fire a schedule now",
    "schedules_list_firings": "List a schedule's firings",
    "tasks_cancel": "Cancel a task",
    "tasks_retry": "Retry a task",
    "tasks_extend": "Extend a task's lease",
    "tasks_complete": "Complete a task",
    "tasks_fail": "Fail a task",
    "tasks_list_events": "List a task's events",
    "tasks_append_events": "Append task events",
    "tasks_list_children": "List a task's child tasks",
    "tasks_create_children": "Create child tasks",
    "tasks_request_approval": "Ask a human mid-task",
    "webhooks_rotate_secret": "Rotate a webhook's signing secret",
    "webhook_deliveries_redeliver": "Redeliver a webhook delivery",
    "workflows_cancel": "Cancel a workflow run",
    "workflows_retry": "Retry a workflow run",
}

#: What agents call with their agent-bound key: tagged agent-protocol, documented with agent-key auth only.
AGENT_PROTOCOL = {
    "agent_heartbeat",
    "agent_claim",
    "agent_complete",
    "tasks_extend",
    "tasks_complete",
    "tasks_fail",
    "tasks_append_events",
    "tasks_create_children",
    "tasks_request_approval",
}

_LEASE = "lease_lost (the lease moved on) or task_cancelled (stop working on it)"
_IDENTITY_UPDATE = "deleted_concurrently (another request deleted it; nothing was changed)"
#: Operation id -> the 409 codes it can answer (the services' conflict exceptions).
CONFLICTS: dict[str, str] = {
    "tasks_create": "orchestra_state_conflict (the orchestra is stopped)",
    "tasks_cancel": "task_state_conflict (only pending or running tasks can be cancelled)",
    "tasks_retry": "task_state_conflict (only failed or cancelled tasks, not workflow steps)",
    "tasks_extend": _LEASE,
    "tasks_complete": _LEASE,
    "tasks_fail": _LEASE,
    "tasks_append_events": _LEASE,
    "tasks_create_children": _LEASE,
    "tasks_request_approval": _LEASE,
    "orchestras_start": "orchestra_state_conflict (not allowed from its current state)",
    "orchestras_pause": "orchestra_state_conflict (not allowed from its current state)",
    "orchestras_resume": "orchestra_state_conflict (not allowed from its current state)",
    "orchestras_stop": "orchestra_state_conflict (not allowed from its current state)",
    "orchestras_destroy": "orchestra_state_conflict (it still has pending or running tasks)",
    "workflows_create": "orchestra_state_conflict (the orchestra is stopped)",
    "workflows_cancel": "workflow_state_conflict (only running workflows can be cancelled)",
    "workflows_retry": "workflow_state_conflict (only failed or cancelled workflows can be retried)",
    "approvals_approve": "approval_state_conflict (it is no longer pending)",
    "approvals_reject": "approval_state_conflict (it is no longer pending)",
    "schedules_run_now": "schedule_overlap (overlap=skip and the previous firing's work is unfinished)",
    "api_keys_rotate": f"api_key_state_conflict (revoked, expired or already rotated), {_IDENTITY_UPDATE}",
    "api_keys_revoke": f"api_key_state_conflict (already revoked), {_IDENTITY_UPDATE}",
    "users_update": f"last_super_admin, {_IDENTITY_UPDATE}",
    "users_partial_update": f"last_super_admin, {_IDENTITY_UPDATE}",
    "users_destroy": "last_super_admin (the last active super admin cannot be deleted)",
    "roles_update": f"system_role_protected, last_super_admin, {_IDENTITY_UPDATE}",
    "roles_partial_update": f"system_role_protected, last_super_admin, {_IDENTITY_UPDATE}",
    "roles_destroy": "system_role_protected (system roles cannot be deleted), last_super_admin",
    "projects_update": _IDENTITY_UPDATE,
    "projects_partial_update": _IDENTITY_UPDATE,
    "projects_destroy": "project_not_empty (it still owns objects)",
}

#: Operation id -> extra error statuses the general rules do not see (the view raises them itself).
EXTRA_ERRORS: dict[str, dict[str, str]] = {
    "tasks_list_children": {"403": "Listing child tasks needs agent:read."},
    "webhooks_create": {"404": "No such project for this API key (a key bound to another project)."},
}

#: Operation id -> extra 429 meaning: a budget refuses submissions with the same status as the limiter.
BUDGET_429 = {"tasks_create", "agents_execute", "workflows_create"}

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: the body or a query parameter (named in `details`), an unknown field or "
    "query parameter, or malformed JSON.",
    "401": "Missing, invalid, revoked or expired credentials (`WWW-Authenticate` says how to authenticate).",
    "401-public": "Credentials were sent and refused (this operation needs none: send none, or a valid key).",
    "403": "Authenticated, but not allowed: `details` names the permission required and what limited it.",
    "404": "No such object, or not visible to the caller (another project's objects answer the same).",
    "409": "The object's current state does not allow this: {codes}.",
    "413": "Request body (or a field such as a task's input, result or events) larger than its limit.",
    "415": "Request body is not application/json.",
    "429": "Rate limit exceeded (`rate_limited`); retry after `Retry-After` seconds.",
    "503": "The database, the shared cache or the rate limiter is unavailable; retry after `Retry-After` seconds.",
}


def _tokens(path: str) -> list[str]:
    """Path segments after /api/v1/, without parameters."""
    rest = re.sub(r"^/api/v1/?", "", path)
    return [t for t in rest.strip("/").split("/") if t and not t.startswith("{")]


def _fill(template: str, path: str) -> str:
    """``template`` with the path's resource names, ``{a}`` the article ("an API key")."""
    singular, plural = _resource(path)
    article = "an" if singular[:1].lower() in "aeio" else "a"  # "a user": no resource needs "an u..."
    return template.format(a=article, singular=singular, plural=plural)


def _resource(path: str) -> tuple[str, str]:
    tokens = _tokens(path)
    first = tokens[0] if tokens else ""
    return RESOURCES.get(first, (first.replace("-", " "), first.replace("-", " ")))


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema with Symphony's naming, security and error rules (module docstring)."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        # A plain ViewSet's ``list`` that answers one object (``usage``: a report) is not a list of them.
        if getattr(self.view, "action", None) == "list" and not isinstance(self.view, GenericAPIView):
            candidate = serializer if serializer is not None else self.get_response_serializers()
            return isinstance(candidate, ListSerializer) or getattr(candidate, "many", False)
        return super()._is_list_view(serializer)

    def _is_custom_action(self) -> bool:
        action = getattr(self.view, "action", None)
        return action is not None and action not in _STANDARD_ACTIONS

    def get_operation_id(self) -> str:
        override = OPERATION_IDS.get((self.method, self.path))
        if override:
            return override
        if self._is_custom_action():
            return "_".join(t.replace("-", "_") for t in _tokens(self.path))
        return super().get_operation_id()

    def get_summary(self) -> str | None:
        operation_id = self.get_operation_id()
        if operation_id in SUMMARIES:
            return SUMMARIES[operation_id]
        action = getattr(self.view, "action", None)
        if action in _STANDARD_SUMMARIES:
            return _fill(_STANDARD_SUMMARIES[action], self.path)
        doc = super().get_description()
        return doc.split(".")[0].strip()[:80] if doc else None

    def get_description(self) -> str:
        action = getattr(self.view, "action", None)
        method_doc = openapi.get_doc(getattr(self.view, action or self.method.lower(), None))
        view_doc = openapi.get_doc(self.view.__class__)
        if action in _STANDARD_DESCRIPTIONS and not _own_doc(self.view, action):
            sentence = _fill(_STANDARD_DESCRIPTIONS[action], self.path)
            return f"{sentence}\n\n{view_doc}".strip()
        return method_doc or view_doc or (self.get_summary() or "")

    def get_tags(self) -> list[str]:
        if self.get_operation_id() in AGENT_PROTOCOL:
            return [AGENT_TAG]
        tokens = _tokens(self.path)
        return tokens[:1] or ["api"]

    def _is_agent_protocol(self) -> bool:
        return AGENT_TAG in self.get_tags()

    def _required_code(self) -> str | None:
        required = getattr(self.view, "required_perms", None) or {}
        action = getattr(self.view, "action", None)
        if action is not None and action in required:
            return required[action]
        return required.get(self.method)

    def get_auth(self) -> list[dict[str, list[Any]]]:
        if self._required_code() == "public":
            return []
        if self._is_agent_protocol():
            return [{"AgentKeyBearer": []}, {"AgentKeyHeader": []}]
        return super().get_auth()

    def get_operation(self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any) -> Any:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        for status, description in self.error_statuses(operation).items():
            response = responses.setdefault(status, {"description": description})
            response["description"] = description
            response["content"] = {"application/json": {"schema": ERROR_REF}}
        return operation

    def error_statuses(self, operation: dict[str, Any]) -> dict[str, str]:
        """The error statuses this operation can answer, with their descriptions (module docstring)."""
        operation_id = operation["operationId"]
        params = operation.get("parameters", [])
        has_query = any(p.get("in") == "query" for p in params)
        has_path = any(p.get("in") == "path" for p in params)
        has_body = self.method in _BODY_METHODS
        code = self._required_code()
        statuses: dict[str, str] = {}
        if has_body or has_query:
            statuses["400"] = ERROR_DESCRIPTIONS["400"]
        # Credentials are checked whenever they are sent, so even a public operation refuses a bad key.
        statuses["401"] = ERROR_DESCRIPTIONS["401"] if code != "public" else ERROR_DESCRIPTIONS["401-public"]
        # Unsafe methods: CSRF under cookie auth, escalation and holder checks; else a catalog code.
        if self.method in _UNSAFE_METHODS or self._is_agent_protocol() or code not in (None, "authenticated", "public"):
            statuses["403"] = ERROR_DESCRIPTIONS["403"]
        if has_path:
            statuses["404"] = ERROR_DESCRIPTIONS["404"]
        if operation_id in CONFLICTS:
            statuses["409"] = ERROR_DESCRIPTIONS["409"].format(codes=CONFLICTS[operation_id])
        if has_body:
            statuses["413"] = ERROR_DESCRIPTIONS["413"]
            statuses["415"] = ERROR_DESCRIPTIONS["415"]
        statuses["429"] = ERROR_DESCRIPTIONS["429"]
        if operation_id in BUDGET_429:
            statuses["429"] += " Also `budget_exhausted`: a budget of the orchestra or project is spent."
        statuses["503"] = ERROR_DESCRIPTIONS["503"]
        statuses.update(EXTRA_ERRORS.get(operation_id, {}))
        return dict(sorted(statuses.items()))


def _own_doc(view: Any, action: str) -> bool:
    """Whether the view's class itself defines ``action`` with a docstring (not a DRF mixin's)."""
    for klass in type(view).__mro__:
        if action in vars(klass):
            return klass.__module__.split(".")[0] != "rest_framework" and bool(openapi.get_doc(vars(klass)[action]))
    return False


# --- postprocessing: shared components -----------------------------------------------------------

ERROR_SCHEMAS = {
    "Error": {
        "type": "object",
        "description": "The one error shape of every 4xx and 5xx answer of the API.",
        "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}},
        "required": ["error"],
    },
    "ErrorBody": {
        "type": "object",
        "description": "What went wrong: a stable code, a message naming the field, and structured details.",
        "properties": {
            "code": {"type": "string", "description": "Stable snake_case code (docs/api.md lists them)."},
            "message": {"type": "string", "description": "Human-readable summary, naming the field."},
            "details": {
                "nullable": True,
                "description": "Per-field messages (validation), the permission required (403), or null.",
            },
            "request_id": {"type": "string", "nullable": True, "description": "The request's X-Request-ID."},
        },
        "required": ["code", "message", "details", "request_id"],
    },
}

HEADERS = {
    "X-RateLimit-Limit": ("integer", "Requests allowed in the current window."),
    "X-RateLimit-Remaining": ("integer", "Requests left in the current window."),
    "X-RateLimit-Reset": ("integer", "Seconds until the window resets."),
    "Retry-After": ("integer", "Seconds to wait before retrying."),
    "X-Request-ID": ("string", "The request id: the client's own X-Request-ID when sane, else a new one."),
}

AGENT_KEY_SCHEMES = {
    "AgentKeyBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "sym_<prefix>_<secret>",
        "description": "An agent-bound API key (issued when the agent is created) as `Authorization: Bearer ...`.",
    },
    "AgentKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same agent-bound API key in the `X-API-Key` header.",
    },
}

TAG_DESCRIPTIONS = {
    "api": "The API root: links to every resource.",
    AGENT_TAG: "What workers call with their agent-bound key: heartbeat, claim, and the lease calls on "
    "the tasks they hold (extend, complete, fail, events, children, approval).",
    "access": "Explain permissions: who holds what, where, and through which binding.",
    "me": "The caller: user, roles, permissions and the API key in use.",
    "usage": "LLM usage (tokens and cost) reported by tasks.",
}

SUCCESS_DESCRIPTIONS = {
    "200": "OK.",
    "201": "Created.",
    "204": "Done; no body.",
}
_SUCCESS_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Request-ID")
_METHODS = {"get", "put", "post", "patch", "delete"}


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the shared components, tags and parameter descriptions."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(ERROR_SCHEMAS)
    components["headers"] = {
        name: {"schema": {"type": kind}, "description": text} for name, (kind, text) in HEADERS.items()
    }
    components.setdefault("securitySchemes", {}).update(AGENT_KEY_SCHEMES)
    tags: set[str] = set()
    for path, path_item in result.get("paths", {}).items():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            tags.update(operation.get("tags", []))
            for status, response in operation.get("responses", {}).items():
                if not response.get("description"):
                    response["description"] = SUCCESS_DESCRIPTIONS.get(status, "Success.")
                headers = response.setdefault("headers", {})
                names = _SUCCESS_HEADERS if status.startswith(("2", "3")) else ("X-Request-ID",)
                if status in ("429", "503"):
                    names = (*names, "Retry-After")
                for name in names:
                    headers.setdefault(name, _header_ref(name))
            for parameter in operation.get("parameters", []):
                if not parameter.get("description"):
                    parameter["description"] = _parameter_description(path, parameter)
                _bound_integer(parameter)
    result["tags"] = [{"name": tag, "description": _tag_description(tag)} for tag in sorted(tags)]
    _close_request_bodies(result)
    return result


def _close_request_bodies(result: dict[str, Any]) -> None:
    """Request bodies refuse fields they do not declare (``symphony.serializers.InputSerializer``): say so
    with ``additionalProperties: false`` on each top-level body component."""
    schemas = result.get("components", {}).get("schemas", {})
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1]
                if name in schemas and schemas[name].get("type") == "object":
                    schemas[name]["additionalProperties"] = False


def _bound_integer(parameter: dict[str, Any]) -> None:
    schema = parameter.get("schema", {})
    if parameter.get("in") == "path" and schema.get("pattern") == r"^\d+$":
        # lookup_value_regex = r"\d+": a numeric id, typed as one (a generated client then takes an int).
        parameter["schema"] = schema = {"type": "integer", "minimum": 0, "maximum": INT64}
    targets = [schema, schema.get("items", {})] if parameter.get("in") == "query" else []
    for target in targets:
        if target.get("type") in ("integer", "number"):
            target.setdefault("maximum", INT64)
            target.setdefault("minimum", -INT64)


def _tag_description(tag: str) -> str:
    if tag in TAG_DESCRIPTIONS:
        return TAG_DESCRIPTIONS[tag]
    _singular, plural = RESOURCES.get(tag, (tag, tag))
    return f"{plural[0].upper()}{plural[1:]}."


def _parameter_description(path: str, parameter: dict[str, Any]) -> str:
    singular, plural = _resource(path)
    name = parameter["name"]
    words = name.replace("_", " ")
    if parameter.get("in") == "path":
        return f"The {singular}'s numeric id." if name == "id" else f"The {singular}'s {words}."
    if name.endswith(("_after", "_since")) or name == "since":
        return f"Only {plural} at or after this time (ISO 8601)."
    if name.endswith("_before") or name == "until":
        return f"Only {plural} before this time (ISO 8601)."
    if parameter.get("schema", {}).get("type") == "boolean":
        return f"Only {plural} whose {words} is true (or false)."
    return f"Only {plural} whose {words} is this value."
