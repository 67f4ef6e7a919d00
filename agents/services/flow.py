"""Flow control on the claim path: concurrency limits per key and round-robin fairness between keys.

Kept apart from dispatch.py so the claim transaction reads as three steps: pick candidates
(``claim_candidates``), lock them, keep those within their limits (``claim_within_limits``).

Concurrency limits under ``SKIP LOCKED``. Candidate rows are locked with ``SKIP LOCKED``, so two
claimers never see each other's candidates: counting running tasks per key is not enough by itself,
both could count N-1 and both take the last slot. So, for every limited key among its candidates, a
claim then locks that key's ``ConcurrencyLimit`` row (``FOR UPDATE``, blocking, in id order so two
claimers never deadlock), and only then counts the key's running tasks: under READ COMMITTED that
count is a fresh snapshot taken after the previous holder of the lock committed its claims. Claims
for one limited key are serialised for the few milliseconds of the count; claims of other keys are
not. A cheap, unlocked pre-filter drops keys that are already full, so a full key does not fill the
candidate list with tasks that cannot be taken. SQLite serialises whole claims (``BEGIN IMMEDIATE``),
where the same count is trivially exact.

Fairness: every task gets a turn number ``fair_seq`` within its ``fairness_key`` (default the
submitter) and priority when submitted: one more than the key's last pending turn, but never below
the turn the queue is serving now (the lowest pending turn). Claims order by priority, then turn,
then age, so keys alternate round robin, and a key that arrives late joins at the current turn
instead of behind everything already queued. This costs one statement per submission (at most two
indexed reads) and nothing per claim (the claim index includes the turn).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Subquery
from django.db.models.functions import Coalesce

from agents.flow_models import ConcurrencyLimit
from agents.models import Task


def default_fairness_key(submitter: Any) -> str:
    return f"user:{submitter.pk}" if submitter is not None and submitter.pk else "anonymous"


def fair_seq_next(*, fairness_key: str, priority: int) -> int:
    """The turn of a new task of ``fairness_key`` at ``priority`` (0 when fairness is switched off)."""
    if not settings.SYMPHONY_TASK_FAIRNESS:
        return 0
    # Turns are global per priority (not per project): claims of one project still see increasing turns.
    # One statement; the second read runs only when the key has no pending turn (COALESCE stops at
    # the first value on PostgreSQL and SQLite). agents/tests/test_fair_claims.py holds it to its ORM form.
    with connection.cursor() as cursor:
        cursor.execute(_FAIR_SEQ_SQL, [Task.Status.PENDING, priority, fairness_key, Task.Status.PENDING, priority])
        return cursor.fetchone()[0]


#: ``fair_seq_next`` written once as SQL: the two aggregates as the ORM built them cost more CPU to
#: build and compile than a submission's insert. Each read is one step of an index (the key's last
#: turn: ``task_fair_key_idx``; the lowest pending turn: ``task_fair_claim_idx``).
_FAIR_SEQ_SQL = f"""
SELECT COALESCE(
    (SELECT MAX(t.fair_seq) + 1 FROM {Task._meta.db_table} t
     WHERE t.status = %s AND t.priority = %s AND t.fairness_key = %s),
    (SELECT MIN(t.fair_seq) FROM {Task._meta.db_table} t WHERE t.status = %s AND t.priority = %s),
    1)
"""  # noqa: S608 (the table name is the model's; every value is bound)


def _full_keys(project_id: int) -> Any:
    """The project's keys whose running tasks reach their limit, as a subquery (unlocked: a hint,
    re-checked under the lock by ``claim_within_limits``)."""
    running = (
        Task.objects.filter(status=Task.Status.RUNNING, project_id=project_id, concurrency_key=OuterRef("key"))
        .order_by()
        .values("concurrency_key")
        .annotate(n=Count("id"))
        .values("n")
    )
    limits = ConcurrencyLimit.objects.filter(project_id=project_id).annotate(running=Coalesce(Subquery(running), 0))
    return limits.filter(running__gte=F("max_running")).values("key")


def claim_candidates(candidates: Any, *, project_id: int) -> Any:
    """Narrow the claimable queryset of an agent of ``project_id`` (agents claim only their project's
    tasks): no tasks of a full concurrency key, none under a spent budget (nothing at all when the
    project's own budget is spent).

    Both conditions are subqueries of the candidates' own SELECT, which PostgreSQL and SQLite
    evaluate once per claim: one statement, where reading the spent budgets and the full keys first
    took three on every claim, with or without budgets and limits configured.
    """
    from agents.services.usage import exhausted_budgets

    spent = exhausted_budgets().filter(project_id=project_id)
    return (
        candidates.filter(~Exists(spent.filter(orchestra__isnull=True)))
        .exclude(orchestra_id__in=spent.filter(orchestra__isnull=False).values("orchestra_id"))
        .exclude(concurrency_key__in=_full_keys(project_id))
    )


def claim_within_limits(tasks: list[Task]) -> list[Task]:
    """Of the locked candidates ``tasks`` (in claim order), keep those their concurrency limits allow.

    Locks the limit row of every limited key among them (see the module docstring) and counts that
    key's running tasks; the candidates themselves are still pending, so they are not counted.
    """
    keys = sorted({t.concurrency_key for t in tasks if t.concurrency_key})
    if not keys:
        return tasks
    project_id = tasks[0].project_id  # one agent's claim: all of its project
    locked = ConcurrencyLimit.objects.select_for_update().filter(project_id=project_id, key__in=keys).order_by("id")
    limits = {limit.key: limit.max_running for limit in locked}
    if not limits:
        return tasks
    running = Counter(
        dict(
            Task.objects.filter(status=Task.Status.RUNNING, project_id=project_id, concurrency_key__in=list(limits))
            .order_by()
            .values_list("concurrency_key")
            .annotate(n=Count("id"))
            .values_list("concurrency_key", "n")
        )
    )
    kept = []
    for task in tasks:
        key = task.concurrency_key
        if key in limits:
            if running[key] >= limits[key]:
                continue
            running[key] += 1
        kept.append(task)
    return kept


__all__ = ["claim_candidates", "claim_within_limits", "default_fairness_key", "fair_seq_next"]
