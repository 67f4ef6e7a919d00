"""Serializers of flow control: concurrency limits, usage reports, budgets."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import DEFAULT_PROJECT_SLUG, Project
from agents.flow_models import Budget, ConcurrencyLimit
from agents.models import Orchestra, validate_flow_key
from symphony.serializers import InputSerializer


class ProjectField(serializers.SlugRelatedField):
    """A project named by its slug; omitted, the default project."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("slug_field", "slug")
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", Project.objects.filter(is_active=True))
            kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def get_default(self) -> Any:
        if self.read_only:
            return super().get_default()
        project = Project.objects.filter(slug=DEFAULT_PROJECT_SLUG).first()
        if project is None:  # deleted or renamed: a 400 naming the field, not a 500 further on
            raise serializers.ValidationError("There is no default project: name one.")
        return project


class ConcurrencyLimitSerializer(serializers.ModelSerializer):
    project = ProjectField(read_only=True)

    class Meta:
        model = ConcurrencyLimit
        fields = ["id", "project", "key", "max_running", "created_at", "updated_at"]
        read_only_fields = fields


class ConcurrencyLimitWriteSerializer(InputSerializer):
    project = ProjectField()
    key = serializers.CharField(max_length=200, validators=[validate_flow_key])
    max_running = serializers.IntegerField(min_value=1, max_value=1_000_000)


class ConcurrencyLimitUpdateSerializer(InputSerializer):
    max_running = serializers.IntegerField(min_value=1, max_value=1_000_000)


CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
DECIMAL_PATTERN = re.compile(r"^\d{1,10}(\.\d{1,10})?$")
USAGE_FIELDS = {"model", "input_tokens", "output_tokens", "cost", "currency"}
MAX_USAGE_ITEMS = 100


def _usage_item(item: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    if not isinstance(item, dict):
        return {}, {"non_field_errors": ["Each usage entry is an object."]}
    for name in sorted(set(item) - USAGE_FIELDS):
        errors[name] = [f"Unknown field. Known fields: {', '.join(sorted(USAGE_FIELDS))}."]
    model = item.get("model")
    if not isinstance(model, str) or not 1 <= len(model) <= 100 or not model.isprintable():
        errors["model"] = ["A model name of 1-100 printable characters is required."]
    clean: dict[str, Any] = {"model": model}
    for name in ("input_tokens", "output_tokens"):
        value = item.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            errors[name] = ["An integer is required."]
        elif not 0 <= value <= 10**15:
            errors[name] = ["Must be between 0 and 10^15: token counts are never negative."]
        clean[name] = value
    cost = item.get("cost", "0")
    # A string, never a JSON number: binary floats cannot hold money exactly.
    if not isinstance(cost, str) or not DECIMAL_PATTERN.match(cost):
        errors["cost"] = ['A non-negative decimal string such as "0.0123" is required (no floats for money).']
    else:
        clean["cost"] = Decimal(cost)
    currency = item.get("currency", "USD")
    if not isinstance(currency, str) or not CURRENCY_PATTERN.match(currency):
        errors["currency"] = ["A three-letter ISO 4217 code in capitals (USD) is required."]
    clean["currency"] = currency
    return clean, errors


@extend_schema_field(
    {
        "type": "array",
        "maxItems": MAX_USAGE_ITEMS,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["model"],
            "properties": {
                "model": {"type": "string", "maxLength": 100},
                "input_tokens": {"type": "integer", "minimum": 0},
                "output_tokens": {"type": "integer", "minimum": 0},
                "cost": {"type": "string", "pattern": DECIMAL_PATTERN.pattern, "example": "0.0123"},
                "currency": {"type": "string", "pattern": CURRENCY_PATTERN.pattern, "default": "USD"},
            },
        },
    }
)
class UsageField(serializers.Field):
    """``[{"model", "input_tokens", "output_tokens", "cost": "0.0123", "currency": "USD"}]``, strictly checked.

    Errors name the entry and the field: ``{"usage": {"1.input_tokens": [...]}}``.
    """

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, list):
            raise serializers.ValidationError("A list of usage entries is required.")
        if len(data) > MAX_USAGE_ITEMS:
            raise serializers.ValidationError(f"At most {MAX_USAGE_ITEMS} usage entries per report.")
        items, errors = [], {}
        for index, item in enumerate(data):
            clean, item_errors = _usage_item(item)
            errors.update({f"{index}.{name}": messages for name, messages in item_errors.items()})
            items.append(clean)
        if errors:
            raise serializers.ValidationError(errors)
        return items

    def to_representation(self, value: Any) -> Any:
        return value


class UsageQuerySerializer(InputSerializer):
    GROUPS = ("project", "orchestra", "agent", "model", "submitter", "day")

    group_by = serializers.ChoiceField(choices=GROUPS, default="model")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    orchestra = serializers.IntegerField(required=False, min_value=1)
    project = serializers.SlugField(required=False, max_length=64)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": ["Must not be before since."]})
        return attrs


class UsageGroupSerializer(serializers.Serializer):
    key = serializers.CharField(allow_null=True, help_text="The group: a model, an orchestra id, a day, ...")
    currency = serializers.CharField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=30, decimal_places=10, coerce_to_string=True)
    records = serializers.IntegerField()


class UsageReportSerializer(serializers.Serializer):
    group_by = serializers.CharField()
    results = UsageGroupSerializer(many=True)


class BudgetSerializer(serializers.ModelSerializer):
    project = ProjectField(read_only=True)
    reset_at = serializers.SerializerMethodField()
    is_exhausted = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = [
            "id", "project", "orchestra", "limit", "currency", "period", "spent", "period_start", "alerted_percent",
            "is_exhausted", "reset_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_reset_at(self, budget: Budget) -> str:
        from agents.services.usage import period_reset_at

        return period_reset_at(budget.period, budget.period_start).isoformat()

    def get_is_exhausted(self, budget: Budget) -> bool:
        from agents.services.usage import period_start

        return budget.period_start == period_start(budget.period) and budget.spent >= budget.limit


class BudgetWriteSerializer(InputSerializer):
    project = ProjectField()
    orchestra = serializers.PrimaryKeyRelatedField(queryset=Orchestra.objects.all(), required=False, allow_null=True)
    limit = serializers.DecimalField(max_digits=20, decimal_places=4, min_value=Decimal("0.0001"))
    currency = serializers.RegexField(CURRENCY_PATTERN.pattern, default="USD")
    period = serializers.ChoiceField(choices=Budget.Period.choices, default=Budget.Period.MONTH)

    def validate_limit(self, value: Any) -> Decimal:
        if not isinstance(self.initial_data.get("limit"), str):
            raise serializers.ValidationError('A decimal string such as "100.00" is required (no floats for money).')
        return value


class BudgetUpdateSerializer(BudgetWriteSerializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("limit", "currency", "period"):
            self.fields[name].required = False
            self.fields[name].default = serializers.empty
        del self.fields["orchestra"], self.fields["project"]
