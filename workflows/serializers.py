"""API shapes of workflows and approvals (input and output serializers apart)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.catalog import PERMISSIONS
from agents.models import Orchestra, validate_kind
from agents.serializers import AnyJSONField, CapabilitiesField, PriorityField
from symphony.serializers import InputSerializer
from workflows.models import Approval, WorkflowRun


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise serializers.ValidationError("Must be a JSON object.")
    return value


class StepSerializer(InputSerializer):
    key = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$", help_text="Unique key of the step in the run.")
    type = serializers.ChoiceField(choices=["task", "approval"], default="task")
    kind = serializers.CharField(max_length=100, validators=[validate_kind], required=False)
    input = serializers.JSONField(required=False, default=dict, validators=[_json_object])
    depends_on = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list, max_length=1000
    )
    required_capabilities = CapabilitiesField(required=False, default=list)
    priority = PriorityField(required=False, default="normal")
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, default=3)
    approvers = serializers.CharField(max_length=64, required=False, help_text="Permission code (approval steps).")
    distinct_from_submitter = serializers.BooleanField(default=False)
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=10**8, required=False)
    question = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")

    def validate_approvers(self, value: str) -> str:
        if value not in PERMISSIONS:
            raise serializers.ValidationError(f"'{value}' is not a permission code of the catalog.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == "task" and not attrs.get("kind"):
            raise serializers.ValidationError({"kind": [f"Step '{attrs['key']}': a task step needs a kind."]})
        return attrs


class WorkflowSubmitSerializer(InputSerializer):
    orchestra = serializers.PrimaryKeyRelatedField(queryset=Orchestra.objects.all())
    name = serializers.CharField(max_length=200)
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True)
    steps = StepSerializer(many=True, allow_empty=False)


class StepStatusSerializer(serializers.Serializer):
    key = serializers.CharField(source="step_key")
    type = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    task = serializers.IntegerField(source="pk")
    depends_on = serializers.ListField(child=serializers.CharField())
    attempts = serializers.IntegerField()
    agent = serializers.IntegerField(source="agent_id", allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    result = AnyJSONField(allow_null=True)
    error = serializers.CharField()


class WorkflowRunSerializer(serializers.ModelSerializer):
    submitter = serializers.SlugRelatedField(slug_field="username", read_only=True)
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = WorkflowRun
        fields = [
            "id", "project", "name", "orchestra", "status", "submitter", "idempotency_key", "step_count", "steps_left",
            "created_at", "updated_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class WorkflowRunDetailSerializer(WorkflowRunSerializer):
    steps = serializers.SerializerMethodField()

    class Meta(WorkflowRunSerializer.Meta):
        fields = [*WorkflowRunSerializer.Meta.fields, "steps"]
        read_only_fields = fields

    @extend_schema_field(StepStatusSerializer(many=True))
    def get_steps(self, run: WorkflowRun) -> list[dict[str, Any]]:
        from workflows.selectors import workflow_steps

        return StepStatusSerializer(workflow_steps(run), many=True).data


class ApprovalSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    submitter = serializers.SlugRelatedField(slug_field="username", read_only=True)
    step_key = serializers.CharField(source="task.step_key", read_only=True)

    class Meta:
        model = Approval
        fields = [
            "id", "project", "kind", "status", "task", "run", "step_key", "approvers", "distinct_from_submitter",
            "timeout_seconds", "question", "data", "submitter", "requested_by_agent", "requested_at",
            "expires_at", "decided_by", "decided_at", "comment", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class DecisionSerializer(InputSerializer):
    comment = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class ApprovalRequestSerializer(InputSerializer):
    attempt = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="The lease token of the claim.")
    question = serializers.CharField(max_length=5000)
    data = serializers.JSONField(required=False, default=dict, validators=[_json_object])
    approvers = serializers.CharField(max_length=64, default="orchestra:control")
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=10**8, required=False)

    validate_approvers = StepSerializer.validate_approvers
