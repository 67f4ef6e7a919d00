"""API shapes. Input and output serializers are separate where the shapes differ (STYLE.md §3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.flow_serializers import UsageField
from agents.models import Agent, Orchestra, Task, TaskEvent, validate_capabilities, validate_flow_key, validate_kind
from symphony.serializers import InputSerializer, SharedFields


class PriorityField(serializers.ChoiceField):
    """Priority as its label (low, normal, high, urgent); stored as an integer for ordering."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=[label for _, label in Task.Priority.choices], **kwargs)

    def to_internal_value(self, data: Any) -> int:
        label = super().to_internal_value(data)
        return next(value for value, name in Task.Priority.choices if name == label)

    def to_representation(self, value: int) -> str:
        return Task.Priority(value).label

    def get_default(self) -> Any:
        default = super().get_default()
        return self.to_internal_value(default) if isinstance(default, str) else default


class CapabilitiesField(serializers.ListField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.CharField(max_length=64), max_length=64, **kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        value = super().run_validation(data)
        if value is not None:
            validate_capabilities(list(value))
        return value


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise serializers.ValidationError("Must be a JSON object.")
    return value


# --- agents ---------------------------------------------------------------------------------------


def _project_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="slug", read_only=True, help_text="Slug of its project.")


def _project_input() -> serializers.SlugRelatedField:
    from accounts.models import Project

    return serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Project.objects.all(),
        required=False,
        help_text="Slug of the project to create it in (default: the key's project, else 'default').",
    )


class AgentSerializer(SharedFields, serializers.ModelSerializer):
    project = _project_field()
    status = serializers.CharField(source="effective_status", read_only=True, help_text="offline when stale.")
    # Plain values read from Agent properties rather than relation fields over owner, api_key and the
    # orchestras manager: same shapes, but the list page can fill them in bulk (issue 7, see the model).
    owner = serializers.CharField(source="owner_username", read_only=True, help_text="Username of who registered it.")
    orchestras = serializers.ListField(
        child=serializers.IntegerField(), source="orchestra_ids", read_only=True, help_text="Ids of its orchestras."
    )
    api_key_prefix = serializers.CharField(read_only=True, allow_null=True, default=None)

    class Meta:
        model = Agent
        fields = [
            "id",
            "project",
            "name",
            "type",
            "capabilities",
            "status",
            "trust_level",
            "version",
            "metadata",
            "owner",
            "orchestras",
            "api_key_prefix",
            "last_heartbeat_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def agent_list_data(rows: Iterable[tuple[Any, ...]], orchestra_ids: dict[int, list[int]]) -> list[dict[str, Any]]:
    """The list page's agents, from ``selectors.agent_list_rows`` tuples and ``agent_orchestra_ids``,
    exactly as ``AgentSerializer(many=True).data`` shows them (which still documents the list).

    DRF's field-by-field ``to_representation`` (attribute lookup, ``None`` checks and conversions
    for each of 15 fields of each row) cost more than the rest of the request; the values are
    already of the right types here, so only the datetimes and the effective status are computed.
    ``agents/tests/test_agents_api.py`` compares the two outputs.
    """
    cutoff, tz, offline = Agent.heartbeat_cutoff(), timezone.get_current_timezone(), Agent.Status.OFFLINE.value
    data = []
    for (
        pk,
        project,
        name,
        type_,
        capabilities,
        status,
        trust_level,
        version,
        metadata,
        owner,
        api_key_prefix,
        last_heartbeat_at,
        created_at,
        updated_at,
    ) in rows:
        online = last_heartbeat_at is not None and last_heartbeat_at >= cutoff
        data.append(
            {
                "id": pk,
                "project": project,
                "name": name,
                "type": type_,
                "capabilities": capabilities,
                "status": status if online else offline,
                "trust_level": trust_level,
                "version": version,
                "metadata": metadata,
                "owner": owner,
                "orchestras": orchestra_ids[pk],
                "api_key_prefix": api_key_prefix,
                "last_heartbeat_at": _iso_datetime(last_heartbeat_at, tz),
                "created_at": _iso_datetime(created_at, tz),
                "updated_at": _iso_datetime(updated_at, tz),
            }
        )
    return data


def _iso_datetime(value: datetime | None, tz: tzinfo) -> str | None:
    """``value`` as DRF's ``DateTimeField`` renders it (ISO 8601 in the current time zone, UTC as ``Z``)."""
    if value is None:
        return None
    text = value.astimezone(tz).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class AgentCreatedSerializer(AgentSerializer):
    api_key = serializers.CharField(
        source="api_key_raw", read_only=True, help_text="The agent's API key. Shown this once only."
    )

    class Meta(AgentSerializer.Meta):
        fields = [*AgentSerializer.Meta.fields, "api_key"]
        read_only_fields = fields


class AgentWriteSerializer(InputSerializer):
    name = serializers.CharField(max_length=100)
    type = serializers.ChoiceField(choices=Agent.Type.choices, default=Agent.Type.CUSTOM)
    capabilities = CapabilitiesField(required=False, default=list)
    trust_level = serializers.ChoiceField(choices=Agent.TrustLevel.choices, required=False)
    version = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    metadata = serializers.JSONField(required=False, default=dict, validators=[_json_object])
    project = _project_input()


# --- orchestras -----------------------------------------------------------------------------------


class OrchestraSerializer(serializers.ModelSerializer):
    agents = serializers.PrimaryKeyRelatedField(many=True, read_only=True, help_text="Ids of the member agents.")
    project = _project_field()

    class Meta:
        model = Orchestra
        fields = ["id", "project", "name", "description", "state", "agents", "created_at", "updated_at"]
        read_only_fields = fields


class OrchestraWriteSerializer(InputSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    agents = serializers.PrimaryKeyRelatedField(many=True, queryset=Agent.objects.all(), required=False)
    project = _project_input()


class MembershipSerializer(InputSerializer):
    agents = serializers.PrimaryKeyRelatedField(many=True, queryset=Agent.objects.all(), allow_empty=False)


# --- tasks ----------------------------------------------------------------------------------------


class TaskSerializer(SharedFields, serializers.ModelSerializer):
    priority = PriorityField(read_only=True)
    submitter = serializers.SlugRelatedField(slug_field="username", read_only=True)
    project = _project_field()

    class Meta:
        model = Task
        fields = [
            "id",
            "project",
            "orchestra",
            "target_agent",
            "kind",
            "input",
            "required_capabilities",
            "priority",
            "status",
            "agent",
            "attempts",
            "max_attempts",
            "last_attempt",
            "lease_expires_at",
            "result",
            "error",
            "idempotency_key",
            "traceparent",
            "submitter",
            "concurrency_key",
            "fairness_key",
            "created_at",
            "updated_at",
            "started_at",
            "claimed_at",
            "finished_at",
            "workflow",
            "step_key",
            "parent",
            "waiting_on",
        ]
        read_only_fields = fields


class TaskExecuteSerializer(InputSerializer):
    """A task for one agent (``agents/{id}/execute/``)."""

    kind = serializers.CharField(max_length=100, validators=[validate_kind])
    input = serializers.JSONField(
        required=False, default=dict, validators=[_json_object], help_text="A JSON object (size-limited)."
    )
    required_capabilities = CapabilitiesField(required=False, default=list)
    priority = PriorityField(required=False, default="normal")
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, default=3)
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True)
    concurrency_key = serializers.CharField(
        max_length=200, required=False, default="", allow_blank=True, validators=[validate_flow_key],
        help_text="Tasks sharing this key count against its concurrency limit.",
    )  # fmt: skip
    fairness_key = serializers.CharField(
        max_length=200, required=False, default="", allow_blank=True, validators=[validate_flow_key],
        help_text="Claims take turns between fairness keys within a priority (default: the submitter).",
    )  # fmt: skip


class TaskSubmitSerializer(TaskExecuteSerializer):
    # With its project: the submission's task takes it, and its audit event names it.
    orchestra = serializers.PrimaryKeyRelatedField(queryset=Orchestra.objects.select_related("project"))


class CancelSerializer(InputSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


# --- the agent protocol ---------------------------------------------------------------------------


class HeartbeatSerializer(InputSerializer):
    status = serializers.ChoiceField(
        choices=[s for s in Agent.Status.values if s != Agent.Status.OFFLINE], default=Agent.Status.ACTIVE
    )
    metrics = serializers.JSONField(required=False, validators=[_json_object], help_text="Free-form JSON object.")
    version = serializers.CharField(max_length=64, required=False, allow_blank=True)

    def validate_metrics(self, value: Any) -> Any:
        from agents.services import json_size

        if json_size(value) > 16384:
            raise serializers.ValidationError("At most 16384 bytes of JSON are accepted.")
        return value


class HeartbeatResponseSerializer(serializers.Serializer):
    agent = serializers.IntegerField(help_text="The agent's id.")
    name = serializers.CharField()
    status = serializers.CharField()
    cancelled_tasks = serializers.ListField(
        child=serializers.IntegerField(), help_text="Tasks this agent holds that were cancelled: stop them."
    )
    heartbeat_timeout_seconds = serializers.IntegerField()
    server_time = serializers.DateTimeField()


class ClaimSerializer(InputSerializer):
    max_tasks = serializers.IntegerField(min_value=1, max_value=10**6, default=1)
    lease_seconds = serializers.IntegerField(
        min_value=1,
        max_value=10**7,
        required=False,
        help_text="Bounded by the server's SYMPHONY_TASK_MAX_LEASE_SECONDS.",
    )

    wait_seconds = serializers.IntegerField(
        min_value=0,
        default=0,
        help_text="With nothing to claim, hold the request up to this many seconds until a task arrives (at most "
        "SYMPHONY_CLAIM_MAX_WAIT_SECONDS). Only the ASGI process waits; the X-Claim-Wait-Seconds answer header "
        "says how long the server was prepared to wait (0: it did not, poll instead).",
    )

    def validate_wait_seconds(self, value: int) -> int:
        if value > settings.SYMPHONY_CLAIM_MAX_WAIT_SECONDS:
            raise serializers.ValidationError(f"At most {settings.SYMPHONY_CLAIM_MAX_WAIT_SECONDS} seconds.")
        return value

    def validate_max_tasks(self, value: int) -> int:
        if value > settings.SYMPHONY_TASK_MAX_CLAIM:
            raise serializers.ValidationError(f"At most {settings.SYMPHONY_TASK_MAX_CLAIM} tasks per claim.")
        return value


class ClaimedTaskSerializer(SharedFields, serializers.ModelSerializer):
    attempt = serializers.IntegerField(
        source="last_attempt",
        read_only=True,
        help_text="This attempt's number: send it with extend, complete and fail (never reused for this task).",
    )
    priority = PriorityField(read_only=True)

    class Meta:
        model = Task
        fields = [
            "id",
            "kind",
            "input",
            "required_capabilities",
            "priority",
            "attempt",
            "max_attempts",
            "lease_expires_at",
            "traceparent",
            "orchestra",
            "workflow",
            "step_key",
            "parent",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Task) -> dict[str, Any]:
        # What the layers above add to the payload (``upstream`` of a workflow step, an ``approval``
        # decision): set by the claim enrichers (agents.hooks), documented in docs/workflows.md.
        data = super().to_representation(instance)
        data.update(getattr(instance, "claim_extra", None) or {})
        return data


class ClaimResponseSerializer(serializers.Serializer):
    tasks = ClaimedTaskSerializer(many=True)


class _AttemptSerializer(InputSerializer):
    attempt = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        help_text="The lease token: the attempt number from the claim. Any other (stale) attempt gets 409 lease_lost.",
    )


class ExtendSerializer(_AttemptSerializer):
    lease_seconds = serializers.IntegerField(min_value=1, max_value=10**7, required=False)


class LeaseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    attempt = serializers.IntegerField()
    lease_expires_at = serializers.DateTimeField()


@extend_schema_field(OpenApiTypes.ANY)
class AnyJSONField(serializers.JSONField):
    pass


class CompleteSerializer(_AttemptSerializer):
    result = AnyJSONField(required=False, allow_null=True, default=None, help_text="Any JSON (size-limited).")
    wait_for_children = serializers.BooleanField(
        default=False,
        help_text="Stay waiting until every child task has finished, then succeed with children_results "
        "(or fail if one did not succeed).",
    )

    usage = UsageField(required=False, default=list, help_text="LLM usage of this attempt (counted once).")


class BatchCompletionEntrySerializer(CompleteSerializer):
    task = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="The task's id.")


@extend_schema_field(BatchCompletionEntrySerializer(many=True))
class _EntriesField(serializers.ListField):
    child = serializers.JSONField(allow_null=True)  # a null entry is named by its place, as any bad one


class BatchCompleteSerializer(InputSerializer):
    """Entries are checked one by one in ``validate``, so a bad one is named by its place
    (``results[2].attempt``) rather than nested in a list of errors."""

    results = _EntriesField(
        allow_empty=False,
        help_text="Entries of complete (task, attempt, result, usage, wait_for_children), each fenced by its"
        " attempt; at most SYMPHONY_TASK_MAX_CLAIM of them.",
    )

    def validate_results(self, value: list[Any]) -> list[Any]:
        if len(value) > settings.SYMPHONY_TASK_MAX_CLAIM:
            raise serializers.ValidationError(f"At most {settings.SYMPHONY_TASK_MAX_CLAIM} results per request.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # One entry serializer validates every well-formed entry (its fields are built once, not per
        # entry; ``run_validation`` keeps no state between calls). A bad entry is validated again on
        # its own, so that its errors read exactly as ``is_valid`` words them.
        checker = BatchCompletionEntrySerializer()
        entries = []
        for index, raw in enumerate(attrs["results"]):
            checker.initial_data = raw
            if isinstance(raw, Mapping) and not checker.unknown_fields():
                try:
                    entries.append(checker.run_validation(raw))
                    continue
                except serializers.ValidationError:
                    pass
            entry = BatchCompletionEntrySerializer(data=raw)
            if not entry.is_valid():
                place = f"results[{index}]"
                named = {f"{place}.{field}": errors for field, errors in entry.errors.items()}
                if f"{place}.non_field_errors" in named:  # not an object at all
                    named = {place: named.pop(f"{place}.non_field_errors"), **named}
                raise serializers.ValidationError(named)
            entries.append(entry.validated_data)
        return {"results": entries}


class BatchCompletionResultSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    attempt = serializers.IntegerField()
    ok = serializers.BooleanField(help_text="Whether this entry completed the task.")
    status_code = serializers.IntegerField(help_text="The status a single complete would have answered.")
    task_status = serializers.CharField(required=False, help_text="The task's status after the completion.")
    error = serializers.DictField(required=False, help_text="code and message, when ok is false.")


class BatchCompleteResponseSerializer(serializers.Serializer):
    results = BatchCompletionResultSerializer(many=True)
    completed = serializers.IntegerField(help_text="How many entries completed their task.")


class ChildTaskSerializer(InputSerializer):
    kind = serializers.CharField(max_length=100, validators=[validate_kind])
    input = serializers.JSONField(required=False, default=dict, validators=[_json_object])
    required_capabilities = CapabilitiesField(required=False, default=list)
    priority = PriorityField(required=False)
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, default=3)


class ChildrenCreateSerializer(_AttemptSerializer):
    children = ChildTaskSerializer(many=True, allow_empty=False, max_length=1000)


class ChildrenCreatedSerializer(serializers.Serializer):
    children = TaskSerializer(many=True)


class FailSerializer(_AttemptSerializer):
    error = serializers.CharField(max_length=10000, help_text="Why the attempt failed.")
    retryable = serializers.BooleanField(
        default=False, help_text="Put the task back in the queue if attempts are left."
    )
    usage = UsageField(required=False, default=list, help_text="LLM usage of this attempt (counted once).")


class TaskEventInSerializer(InputSerializer):
    type = serializers.ChoiceField(choices=TaskEvent.Type.choices, help_text="progress, output or log.")
    data = AnyJSONField(required=False, default=dict, help_text="Any JSON (size-limited).")


class TaskEventPostSerializer(_AttemptSerializer):
    """One event (``type`` and ``data`` beside ``attempt``) or several (``events``), not both."""

    events = TaskEventInSerializer(many=True, required=False, allow_empty=False)
    type = serializers.ChoiceField(choices=TaskEvent.Type.choices, required=False)
    data = AnyJSONField(required=False)
    usage = UsageField(
        required=False, default=list, help_text="LLM usage spent since the last report (counted once, now)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        raw = self.initial_data.get("events") if isinstance(self.initial_data, dict) else None
        for index, item in enumerate(raw if isinstance(raw, list) else []):
            unknown = sorted(set(item) - {"type", "data"}) if isinstance(item, dict) else []
            if unknown:
                raise serializers.ValidationError(
                    {f"events[{index}].{name}": ["Unknown field. Known fields: data, type."] for name in unknown}
                )
        if "events" in attrs:
            if "type" in attrs or "data" in attrs:
                raise serializers.ValidationError({"events": ["Send either events or one type and data, not both."]})
            return attrs
        if "type" not in attrs:
            if attrs.get("usage") and "data" not in attrs:
                attrs["events"] = []  # usage alone: nothing to append to the stream
                return attrs
            raise serializers.ValidationError({"type": ["This field is required (or send a list in events)."]})
        attrs["events"] = [{"type": attrs.pop("type"), "data": attrs.pop("data", {})}]
        return attrs


class TaskEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskEvent
        fields = ["seq", "type", "data", "attempt", "created_at"]
        read_only_fields = fields


class TaskEventPageSerializer(serializers.Serializer):
    events = TaskEventSerializer(many=True)
    next_after = serializers.IntegerField(
        allow_null=True, help_text="Pass as ?after= for the next page; null at the end."
    )
