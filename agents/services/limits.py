"""Concurrency limits: create, change and delete, each audited in its own transaction."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

import audit
from agents.flow_models import ConcurrencyLimit


@transaction.atomic
def concurrency_limit_create(*, actor: Any, project: Any, key: str, max_running: int) -> ConcurrencyLimit:
    """Limit ``project``'s tasks with ``concurrency_key == key`` to ``max_running`` at once.

    Raises ``ValidationError`` naming ``key`` when that key already has a limit in the project.
    """
    limit = ConcurrencyLimit(project=project, key=key, max_running=max_running, created_by=actor)
    try:
        with transaction.atomic():
            limit.save(force_insert=True)
    except IntegrityError as exc:
        raise ValidationError({"key": ["This key already has a concurrency limit: change that one."]}) from exc
    audit.record(
        "concurrency_limit.created", actor=actor, resource=limit, details={"key": key, "max_running": max_running}
    )
    return limit


@transaction.atomic
def concurrency_limit_update(*, limit: ConcurrencyLimit, actor: Any, max_running: int) -> ConcurrencyLimit:
    """Change a limit. Lowering it never stops running tasks: new claims wait until fewer run."""
    before = limit.max_running
    limit.max_running = max_running
    limit.save(update_fields=["max_running", "updated_at"])
    audit.record(
        "concurrency_limit.updated",
        actor=actor,
        resource=limit,
        details={"key": limit.key, "max_running": [before, max_running]},
    )
    return limit


@transaction.atomic
def concurrency_limit_delete(*, limit: ConcurrencyLimit, actor: Any) -> None:
    """Remove a limit: its key becomes unlimited."""
    details = {"key": limit.key, "max_running": limit.max_running}
    pk = limit.pk
    limit.delete()
    audit.record(
        "concurrency_limit.deleted",
        actor=actor,
        resource_type="agents.concurrencylimit",
        resource_id=pk,
        details=details,
    )
