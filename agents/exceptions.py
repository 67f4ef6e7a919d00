"""Domain errors of dispatch. Each is an ``APIException`` with a stable snake_case code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import exceptions, status

from symphony.exceptions import RateLimited


class TaskStateConflict(exceptions.APIException):
    """The task is not in a state that allows this action (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "task_state_conflict"
    default_detail = "The task is not in a state that allows this action."


class LeaseLost(exceptions.APIException):
    """The caller held this task once, but its lease moved on: expired, reclaimed, cancelled or finished (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "lease_lost"
    default_detail = "This agent no longer holds the lease on this task."


class NotTaskHolder(exceptions.PermissionDenied):
    """The calling agent never held this task (403)."""

    default_code = "not_task_holder"
    default_detail = "This task is held by another agent."


class AgentKeyRequired(exceptions.PermissionDenied):
    """The agent protocol needs an agent-bound API key (403)."""

    default_code = "agent_key_required"
    default_detail = "This endpoint is for agents: authenticate with an agent-bound API key."


class TrustChangeDenied(exceptions.PermissionDenied):
    """Raising trust to verified needs trust:verify; any other trust change needs trust:manage (403)."""

    default_code = "trust_change_denied"


class OrchestraStateConflict(exceptions.APIException):
    """The orchestra's lifecycle does not allow this transition (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "orchestra_state_conflict"
    default_detail = "The orchestra's state does not allow this action."


class PayloadTooLarge(exceptions.APIException):
    """A JSON field is larger than its configured limit (413); the message names the field."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(f"{field}: {size} bytes of JSON exceed the limit of {limit} bytes.", code=f"{field}_too_large")
        self.default_code = f"{field}_too_large"
        self.extra_details = {field: [f"At most {limit} bytes of JSON are accepted; got {size}."]}


class EventLimitExceeded(exceptions.APIException):
    """Too many events in one request, or for one task (413); the message names the setting."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "events_limit_exceeded"

    def __init__(self, setting: str, limit: int, message: str) -> None:
        super().__init__(f"{message} (the limit, {setting}, is {limit}).")
        self.extra_details = {"events": [f"{setting} is {limit}."], "limit": setting}


class TaskCancelled(LeaseLost):
    """The caller held this task, but it was cancelled: stop working on it (409)."""

    default_code = "task_cancelled"
    default_detail = "The task was cancelled: stop working on it."


class BudgetExhausted(RateLimited):
    """A budget covering this work is spent for the period (429 ``budget_exhausted``, ``Retry-After``)."""

    default_code = "budget_exhausted"

    def __init__(self, *, budget: Any, reset_at: datetime) -> None:
        wait = max(int((reset_at - timezone.now()).total_seconds()), 1)
        super().__init__(wait=wait, detail=f"The {budget.period}ly budget is spent until {reset_at.isoformat()}.")
        self.budget = budget
        self.extra_details = {
            "reset_at": reset_at.isoformat(),
            "limit": str(budget.limit),
            "currency": budget.currency,
            "period": budget.period,
        }
