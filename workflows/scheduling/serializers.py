"""API shapes of schedules: one input serializer (create and PATCH), the output ones apart."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from agents.models import Orchestra, validate_kind
from agents.serializers import CapabilitiesField, PriorityField
from symphony.serializers import InputSerializer
from workflows.scheduling import timing
from workflows.scheduling.models import Schedule, ScheduleFiring
from workflows.serializers import StepSerializer
from workflows.validation import validate_dag

#: How many upcoming firings the API and the admin show.
UPCOMING = 5


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise serializers.ValidationError("Must be a JSON object.")
    return value


class ScheduleTaskSerializer(InputSerializer):
    """The task a schedule fires (its orchestra is the schedule's; no idempotency key: one per tick)."""

    kind = serializers.CharField(max_length=100, validators=[validate_kind])
    input = serializers.JSONField(required=False, default=dict, validators=[_json_object])
    required_capabilities = CapabilitiesField(required=False, default=list)
    priority = PriorityField(required=False, default="normal")
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, default=3)


class ScheduleWorkflowSerializer(InputSerializer):
    """The workflow run a schedule fires; ``name`` defaults to the schedule's."""

    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    steps = StepSerializer(many=True, allow_empty=False)

    def validate_steps(self, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            validate_dag(steps)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict.get("steps", error.messages)) from None
        return steps


class ScheduleWriteSerializer(InputSerializer):
    orchestra = serializers.PrimaryKeyRelatedField(queryset=Orchestra.objects.all())
    name = serializers.CharField(max_length=200)
    cron = serializers.CharField(max_length=200, required=False, help_text="Five-field cron expression.")
    interval_seconds = serializers.IntegerField(min_value=1, max_value=10**8, required=False)
    timezone = serializers.CharField(max_length=64, required=False, default="UTC", help_text="IANA time zone.")
    task = ScheduleTaskSerializer(required=False)
    workflow = ScheduleWorkflowSerializer(required=False)
    enabled = serializers.BooleanField(required=False, default=True)
    overlap = serializers.ChoiceField(choices=Schedule.Overlap.choices, required=False, default=Schedule.Overlap.SKIP)

    def validate_cron(self, value: str) -> str:
        try:
            return timing.validate_cron(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None

    def validate_timezone(self, value: str) -> str:
        try:
            timing.parse_timezone(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.partial:
            return attrs
        if ("cron" in attrs) == ("interval_seconds" in attrs):
            raise serializers.ValidationError({"cron": ["Give exactly one of cron and interval_seconds."]})
        if ("task" in attrs) == ("workflow" in attrs):
            raise serializers.ValidationError({"task": ["Give exactly one of task and workflow."]})
        return attrs


def _body(serializer_class: type, value: Any) -> Any:
    return None if value is None else serializer_class(instance=value).data


class ScheduleSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    task = serializers.SerializerMethodField()
    workflow = serializers.SerializerMethodField()
    next_firings = serializers.SerializerMethodField(help_text="The next firings (UTC), while enabled.")

    class Meta:
        model = Schedule
        fields = [
            "id", "project", "orchestra", "name", "cron", "interval_seconds", "timezone", "task", "workflow",
            "enabled", "overlap", "next_fire_at", "next_firings", "last_fired_at", "last_task", "last_run",
            "created_by", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_task(self, schedule: Schedule) -> dict[str, Any] | None:
        return _body(ScheduleTaskSerializer, schedule.task)

    def get_workflow(self, schedule: Schedule) -> dict[str, Any] | None:
        if schedule.workflow is None:
            return None
        return {
            "name": schedule.workflow.get("name", ""),
            "steps": StepSerializer(schedule.workflow["steps"], many=True).data,
        }

    def get_next_firings(self, schedule: Schedule) -> list[str]:
        return [tick.isoformat() for tick in next_firings(schedule)]


def next_firings(schedule: Schedule, count: int = UPCOMING) -> list[Any]:
    """The next ``count`` firings of an enabled schedule (none while paused)."""
    if not schedule.enabled or schedule.next_fire_at is None:
        return []
    return timing.upcoming(
        cron=schedule.cron, interval_seconds=schedule.interval_seconds, timezone=schedule.timezone,
        start=schedule.next_fire_at, count=count,
    )  # fmt: skip


class ScheduleFiringSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScheduleFiring
        fields = [
            "id",
            "schedule",
            "scheduled_for",
            "fired_at",
            "trigger",
            "outcome",
            "missed",
            "task",
            "run",
            "detail",
        ]
        read_only_fields = fields
