"""The audit trail: one append-only, hash-chained row per event."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from audit.events import SEVERITIES


class AuditEvent(models.Model):
    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"
        CRITICAL = "critical"

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILURE = "failure"
        DENIED = "denied"
        ERROR = "error"

    occurred_at = models.DateTimeField(db_index=True, help_text="When the event happened (UTC).")
    event_type = models.CharField(max_length=64, db_index=True, help_text="Dotted event type, e.g. auth.login.")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # DO_NOTHING, not SET_NULL: rows are append-only (the PostgreSQL trigger refuses UPDATE) and
        # actor_id is covered by the hash. No constraint, so history survives the user's deletion
        # and appends take no FK lock; actor_name keeps who it was.
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        help_text="The user who acted, while that user exists.",
    )
    actor_name = models.CharField(
        max_length=150, blank=True, db_index=True, help_text="The actor's username, kept after deletion."
    )
    api_key_prefix = models.CharField(
        max_length=32, blank=True, db_index=True, help_text="Public prefix of the API key used, if any."
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    project = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        db_index=True,
        help_text="Slug of the project the event belongs to; empty for events outside any project.",
    )
    resource_type = models.CharField(max_length=64, blank=True, help_text="e.g. agents.task")
    resource_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="Event-specific facts (JSON object).")
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    trace_id = models.CharField(max_length=32, blank=True)
    # The chain links are written by the sealer just after the event's transaction commits (see
    # audit.services.audit_seal): empty until then.
    prev_hash = models.CharField(max_length=64, blank=True, help_text="Hash of the previous event in the chain.")
    hash = models.CharField(
        max_length=64, null=True, blank=True, unique=True, help_text="SHA-256 over this event's content and prev_hash."
    )
    chain_seq = models.BigIntegerField(
        null=True, blank=True, unique=True, help_text="Position in the hash chain; empty until sealed."
    )

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["resource_type", "resource_id"], name="audit_resource_idx"),
            models.Index(fields=["event_type", "occurred_at"], name="audit_type_time_idx"),
            models.Index(fields=["id"], condition=models.Q(chain_seq__isnull=True), name="audit_unsealed_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(severity__in=SEVERITIES), name="audit_severity_valid"),
            models.CheckConstraint(
                condition=models.Q(outcome__in=["success", "failure", "denied", "error"]), name="audit_outcome_valid"
            ),
            # A row is either waiting to be sealed (no position, no hash) or sealed at a position
            # from 1 up. Nothing can sit beside the chain with a hash, or before its start. (The
            # explicit "not null": a CHECK whose condition is NULL passes.)
            models.CheckConstraint(
                condition=models.Q(chain_seq__isnull=True, hash__isnull=True)
                | models.Q(chain_seq__isnull=False, chain_seq__gt=0, hash__isnull=False),
                name="audit_sealed_consistently",
            ),
        ]
        permissions = [("export_auditevent", "Can export audit events")]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.event_type} {self.actor_name or '-'}"
