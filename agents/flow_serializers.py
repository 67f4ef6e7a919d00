"""Serializers of flow control: concurrency limits, usage reports, budgets."""

from __future__ import annotations

from rest_framework import serializers

from agents.flow_models import ConcurrencyLimit
from agents.models import validate_flow_key
from symphony.serializers import InputSerializer


class ConcurrencyLimitSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConcurrencyLimit
        fields = ["id", "key", "max_running", "created_at", "updated_at"]
        read_only_fields = fields


class ConcurrencyLimitWriteSerializer(InputSerializer):
    key = serializers.CharField(max_length=200, validators=[validate_flow_key])
    max_running = serializers.IntegerField(min_value=1, max_value=1_000_000)


class ConcurrencyLimitUpdateSerializer(InputSerializer):
    max_running = serializers.IntegerField(min_value=1, max_value=1_000_000)
