"""Webhooks API serializers. The secret appears only in the answers that create or rotate it."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import Project
from symphony.serializers import InputSerializer
from webhooks.models import Delivery, DeliveryAttempt, Webhook


class WebhookSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    has_previous_secret = serializers.SerializerMethodField()

    class Meta:
        model = Webhook
        fields = [
            "id",
            "project",
            "url",
            "events",
            "description",
            "enabled",
            "disabled_reason",
            "consecutive_failures",
            "has_previous_secret",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_previous_secret(self, obj: Webhook) -> bool:
        return bool(obj.previous_secret_encrypted)


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(read_only=True, help_text="The signing secret (whsec_...): shown this once.")

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookWriteSerializer(InputSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", queryset=Project.objects.all())
    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(child=serializers.CharField(max_length=100), allow_empty=False, max_length=50)
    description = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")
    enabled = serializers.BooleanField(required=False, default=True)


class WebhookUpdateSerializer(InputSerializer):
    url = serializers.URLField(max_length=2000, required=False)
    events = serializers.ListField(
        child=serializers.CharField(max_length=100), allow_empty=False, max_length=50, required=False
    )
    description = serializers.CharField(max_length=500, allow_blank=True, required=False)
    enabled = serializers.BooleanField(required=False)


class RotateSecretSerializer(InputSerializer):
    overlap_seconds = serializers.IntegerField(
        min_value=0, max_value=30 * 86400, required=False, help_text="How long the old secret keeps signing."
    )


class RotatedSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret: shown this once.")
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "status_code", "is_success", "latency_ms", "response_excerpt", "error", "created_at"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    webhook = serializers.PrimaryKeyRelatedField(read_only=True)
    project = serializers.CharField(source="webhook.project.slug", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "webhook",
            "project",
            "message_id",
            "event_type",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "give_up_at",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempt_log = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "payload", "attempt_log"]
        read_only_fields = fields
