"""Flow-control models: concurrency limits per key, LLM usage records and budgets.

Imported at the end of ``agents.models`` so Django registers them with the agents app.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class ConcurrencyLimit(models.Model):
    """At most ``max_running`` tasks with ``key`` (as their ``concurrency_key``) run at once.

    A key without a limit is unlimited. Claims lock this row while they count the key's running tasks,
    so concurrent claimers cannot both take the last slot (agents/services/flow.py).
    """

    project = models.ForeignKey(
        "accounts.Project", on_delete=models.CASCADE, related_name="concurrency_limits",
        help_text="The limit counts this project's tasks only.",
    )  # fmt: skip
    key = models.CharField(max_length=200, help_text="The concurrency_key this limit applies to.")
    max_running = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="How many tasks with this key may run at once."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(max_running__gte=1), name="concurrency_limit_positive"),
            models.UniqueConstraint(fields=["project", "key"], name="concurrency_limit_key_unique_per_project"),
        ]

    def __str__(self) -> str:
        return f"{self.key} <= {self.max_running}"


class UsageRecord(models.Model):
    """Tokens and money one model call (or a batch of them) cost, as reported by the task's holder.

    Append-only. The task's orchestra, agent and submitter are copied in, so aggregates survive the
    task's deletion and need no joins.
    """

    class Source(models.TextChoices):
        COMPLETION = "completion"
        FAILURE = "failure"
        EVENT = "event"

    project = models.ForeignKey("accounts.Project", on_delete=models.PROTECT, related_name="+")
    task = models.ForeignKey("agents.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="usage")
    orchestra = models.ForeignKey(
        "agents.Orchestra", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    agent = models.ForeignKey("agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model = models.CharField(max_length=100, help_text="The model the tokens were spent on, e.g. gpt-4o.")
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=0, help_text="Money spent, exactly.")
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code.")
    source = models.CharField(max_length=16, choices=Source.choices)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="usage_cost_not_negative"),
        ]
        indexes = [models.Index(fields=["project", "created_at"], name="usage_project_created_idx")]

    def __str__(self) -> str:
        return f"{self.model}: {self.input_tokens}+{self.output_tokens} tokens, {self.cost} {self.currency}"


class Budget(models.Model):
    """At most ``limit`` (in ``currency``) spent per day or month, by the whole project or one of its orchestras.

    ``spent`` is kept up to date by ``usage_record`` under a row lock, so claims and submissions check a
    budget with one indexed read instead of summing usage. Periods are UTC days and months.
    """

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    project = models.ForeignKey(
        "accounts.Project", on_delete=models.CASCADE, related_name="budgets", help_text="Whose spend counts."
    )
    orchestra = models.ForeignKey(
        "agents.Orchestra", on_delete=models.CASCADE, null=True, blank=True, related_name="budgets",
        help_text="The orchestra whose tasks' usage counts; empty: every task of the project.",
    )  # fmt: skip
    limit = models.DecimalField(max_digits=20, decimal_places=4, help_text="Spend allowed per period.")
    currency = models.CharField(max_length=3, default="USD")
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    spent = models.DecimalField(
        max_digits=20, decimal_places=10, default=0, help_text="Spent in period_start's period."
    )
    period_start = models.DateField(help_text="First day of the period ``spent`` belongs to.")
    alerted_percent = models.PositiveSmallIntegerField(
        default=0, help_text="Highest threshold (80, 100) already announced in this period."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(limit__gt=0), name="budget_limit_positive"),
            models.CheckConstraint(condition=Q(period__in=["day", "month"]), name="budget_period_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.limit} {self.currency} per {self.period}"
