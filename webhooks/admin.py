"""Webhooks in the operator console: subscriptions (secrets never shown), the delivery log with each
attempt, and redelivery. Creating webhooks and rotating secrets is done through the API, where the
secret can be shown once."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from webhooks import services
from webhooks.models import Delivery, DeliveryAttempt, Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "url", "enabled", "consecutive_failures", "disabled_reason", "created_at"]
    list_filter = ["enabled", "project"]
    search_fields = ["url", "description"]
    ordering = ["-id"]
    list_select_related = ["project"]
    fields = ["project", "url", "events", "description", "enabled", "disabled_reason", "consecutive_failures"]
    readonly_fields = ["project", "url", "events", "disabled_reason", "consecutive_failures"]
    actions = ["enable", "disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # through the API, which shows the secret once

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        if "secret" in lookup:
            return False
        return super().lookup_allowed(lookup, value, request)

    def save_model(self, request: HttpRequest, obj: Webhook, form: Any, change: bool) -> None:
        data = {field: form.cleaned_data[field] for field in form.changed_data}
        services.webhook_update(webhook=Webhook.objects.get(pk=obj.pk), actor=request.user, data=data)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Webhook], enabled: bool) -> None:
        with transaction.atomic():
            for webhook in queryset:
                services.webhook_update(webhook=webhook, actor=request.user, data={"enabled": enabled})
        verb = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{verb} {queryset.count()} webhooks.", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Enable selected webhooks")
    def enable(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(permissions=["change"], description="Disable selected webhooks")
    def disable(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        self._set_enabled(request, queryset, False)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "status_code", "is_success", "latency_ms", "response_excerpt", "error", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "message_id", "event_type", "webhook", "status", "attempts", "last_status_code", "created_at"]
    list_filter = ["status", "event_type", "webhook__project"]
    search_fields = ["message_id", "event_type", "webhook__url"]
    ordering = ["-id"]
    list_select_related = ["webhook__project"]
    show_full_result_count = False
    inlines = [DeliveryAttemptInline]
    readonly_fields = [
        "webhook",
        "message_id",
        "event_type",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "give_up_at",
        "last_status_code",
        "last_error",
        "created_at",
        "finished_at",
    ]
    actions = ["redeliver"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(permissions=["change"], description="Redeliver selected deliveries now")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        with transaction.atomic():
            count = 0
            for delivery in queryset.select_related("webhook"):
                services.delivery_redeliver(delivery=delivery, actor=request.user)
                count += 1
        self.message_user(request, f"Queued {count} deliveries again.", messages.SUCCESS)
