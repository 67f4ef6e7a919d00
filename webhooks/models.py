"""Webhook subscriptions, their outbox of deliveries, and each delivery's attempts."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import Project


class Webhook(models.Model):
    """A subscription: events of one project matching ``events`` are POSTed, signed, to ``url``."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000, help_text="http(s) URL the events are POSTed to.")
    events = models.JSONField(
        default=list, help_text="Event type patterns: exact (task.failed) or a prefix wildcard (workflow.*)."
    )
    description = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True, help_text="Disabled webhooks get no new deliveries and send none.")
    secret_encrypted = models.TextField(help_text="The signing secret, encrypted (webhooks/crypto.py). Never shown.")
    previous_secret_encrypted = models.TextField(blank=True, help_text="The secret before the last rotation.")
    previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Until then deliveries carry a signature with both secrets."
    )
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Failed attempts since the last success; at the configured limit it is disabled."
    )
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.url}"


class Delivery(models.Model):
    """One event for one webhook: the outbox row, written in the transaction of the change.

    ``message_id`` is the Standard Webhooks ``webhook-id``: the same on every attempt and on manual
    redelivery, so receivers can deduplicate (delivery is at least once).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=64, help_text="webhook-id header: stable across attempts.")
    event_type = models.CharField(max_length=100)
    payload = models.JSONField(help_text="The body sent: {type, timestamp, data}.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        help_text="When a sender may take it next (also pushed ahead while a sender holds it)."
    )
    give_up_at = models.DateTimeField(help_text="No retry is scheduled after this time.")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="webhooks_delivery_due", condition=models.Q(status="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} {self.event_type}"


class DeliveryAttempt(models.Model):
    """One HTTP attempt of a delivery: what the receiver answered, and how fast."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="None: no HTTP answer.")
    is_success = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.CharField(max_length=1024, blank=True, help_text="First bytes of the answer.")
    error = models.CharField(max_length=500, blank=True, help_text="Why no answer (timeout, refused, SSRF...).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery_id", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhooks_attempt_unique")]

    def __str__(self) -> str:
        return f"{self.delivery_id}#{self.number}"
