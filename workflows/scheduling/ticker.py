"""The scheduler's tick: fire every due schedule exactly once, however many schedulers run.

Each tick locks the due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and, in the same transaction,
submits their work, records the firing and moves ``next_fire_at`` past now. A second scheduler
skips the locked rows; once the first commits, the rows are no longer due (PostgreSQL re-checks
``next_fire_at <= now`` on the committed row version before locking it). The unique constraint
``firing_once_per_tick`` backs this up: a tick can never be recorded twice. On SQLite the
transaction takes the write lock at BEGIN (``transaction_mode: IMMEDIATE``), which serialises ticks.

After downtime a schedule fires once for all the ticks it missed (``missed`` on the firing counts
them) and its next tick is the first one after now.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import APIException

import audit
from workflows.scheduling import timing
from workflows.scheduling.models import Schedule, ScheduleFiring
from workflows.scheduling.services import _firing_details, _remember, refusal, submit, unfinished_work

log = structlog.get_logger(__name__)

_AUDIT_TYPES = {
    ScheduleFiring.Outcome.FIRED: "schedule.fired",
    ScheduleFiring.Outcome.SKIPPED: "schedule.skipped",
    ScheduleFiring.Outcome.FAILED: "schedule.fire_failed",
}


def schedule_fire_due(*, now: datetime | None = None, limit: int = 100) -> list[ScheduleFiring]:
    """Fire up to ``limit`` due schedules in one transaction; return their firings.

    A refused submission (stopped orchestra, oversize input, ...) is recorded as a ``failed`` firing
    and the schedule moves on to its next tick; with overlap=skip an unfinished previous firing gives
    a ``skipped`` firing. Database errors propagate (the whole tick rolls back and is retried).
    """
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Schedule.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("orchestra", "created_by")
            .filter(enabled=True, next_fire_at__lte=now)
            .order_by("next_fire_at", "id")[:limit]
        )
        return [_fire(schedule, now) for schedule in due]


def _fire(schedule: Schedule, now: datetime) -> ScheduleFiring:
    scheduled_for = schedule.next_fire_at
    missed, schedule.next_fire_at = timing.fold_missed(
        cron=schedule.cron, interval_seconds=schedule.interval_seconds, timezone=schedule.timezone,
        due=scheduled_for, now=now,
    )  # fmt: skip
    firing = ScheduleFiring(schedule=schedule, scheduled_for=scheduled_for, fired_at=now, missed=missed)
    busy = unfinished_work(schedule)
    if busy:
        firing.outcome, firing.detail = ScheduleFiring.Outcome.SKIPPED, f"overlap=skip: {busy} is unfinished"
    else:
        try:
            with transaction.atomic():
                # The key makes the task or run itself unique per tick too.
                submit(schedule, firing, idempotency_key=f"schedule:{schedule.pk}:{scheduled_for.isoformat()}")
            firing.outcome = ScheduleFiring.Outcome.FIRED
        except (ValidationError, APIException) as error:
            firing.outcome, firing.detail = ScheduleFiring.Outcome.FAILED, refusal(error)
    firing.save(force_insert=True)
    if firing.outcome == ScheduleFiring.Outcome.FIRED:
        _remember(schedule, firing)
    else:
        schedule.save(update_fields=["next_fire_at", "updated_at"])
    audit.record(_AUDIT_TYPES[firing.outcome], resource=schedule, details=_firing_details(firing))
    log.info(
        "schedule_fired", schedule_id=schedule.pk, outcome=firing.outcome, missed=missed,
        task_id=firing.task_id, run_id=firing.run_id,
    )  # fmt: skip
    return firing
