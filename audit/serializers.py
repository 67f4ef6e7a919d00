from __future__ import annotations

from rest_framework import serializers

from audit.export import FIELDS, FORMATS
from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    actor_id = serializers.IntegerField(read_only=True, allow_null=True, help_text="The actor's user id.")

    class Meta:
        model = AuditEvent
        fields = FIELDS
        read_only_fields = FIELDS


class AuditExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=sorted(FORMATS), default="csv", help_text="csv, json or jsonl.")
