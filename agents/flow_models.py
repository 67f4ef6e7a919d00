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
            models.UniqueConstraint(fields=["key"], name="concurrency_limit_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.key} <= {self.max_running}"
