"""LLM usage and budgets: record what a task's model calls cost, and stop dispatch when a budget is spent.

``usage_record`` runs inside the caller's transaction (completion, failure, or a task event), so usage
is counted exactly when the report is accepted. It adds the cost to every matching budget under a row
lock, rolling the budget into a new period when the old one ended, and records ``budget.threshold_crossed``
(80 %) and ``budget.exhausted`` (100 %) once per period each. Exhausted budgets are then skipped by
claims (``exhausted_budgets``, a subquery of the claim: ``flow.claim_candidates``) and refuse
submissions (``budget_check``, 429 ``budget_exhausted``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

import audit
from agents import metrics
from agents.exceptions import BudgetExhausted
from agents.flow_models import Budget, UsageRecord
from agents.models import Agent, Orchestra, Task

THRESHOLDS = (80, 100)


def period_start(period: str, now: dt.datetime | None = None) -> dt.date:
    """First day (UTC) of the day or month containing ``now``."""
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    return today if period == Budget.Period.DAY else today.replace(day=1)


def period_reset_at(period: str, start: dt.date) -> dt.datetime:
    """When the period beginning at ``start`` ends (UTC midnight)."""
    if period == Budget.Period.DAY:
        end = start + dt.timedelta(days=1)
    else:
        end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)


def _current_periods(now: dt.datetime | None = None) -> Q:
    return Q(period=Budget.Period.DAY, period_start=period_start("day", now)) | Q(
        period=Budget.Period.MONTH, period_start=period_start("month", now)
    )


def exhausted_budgets() -> Any:
    """Budgets spent in their current period (one indexed read; the budget table is small)."""
    return Budget.objects.filter(_current_periods(), spent__gte=F("limit"))


def _covering(*, project_id: int, orchestra_id: int | None) -> Q:
    return Q(project_id=project_id) & (Q(orchestra=None) | Q(orchestra_id=orchestra_id))


#: ``exhausted_budgets`` as SQL over a budget aliased ``b``, with ``current_period_params``: shared by
#: the claim's candidate SELECT (``dispatch._CANDIDATES_SQL``) and the submission's check below.
SPENT_NOW_SQL = """b.spent >= b."limit"
  AND ((b.period = 'day' AND b.period_start = %(day)s) OR (b.period = 'month' AND b.period_start = %(month)s))"""


def current_period_params(now: dt.datetime) -> dict[str, Any]:
    """The ``%(day)s`` and ``%(month)s`` of ``SPENT_NOW_SQL``: the periods ``now`` falls in."""
    return {p: connection.ops.adapt_datefield_value(period_start(p, now)) for p in ("day", "month")}


#: The first spent budget that stops a submission into ``%(orchestra)s`` (or, None, to an agent of the
#: project), as SQL written once (PostgreSQL and SQLite): every submission runs it, and the ORM took
#: several times longer to build and compile it than the database takes to answer.
#: ``agents/tests/test_usage_budgets.py`` holds it to its ORM form.
_EXHAUSTED_COVERING_SQL = f"""
SELECT b.id FROM {Budget._meta.db_table} b
WHERE b.project_id = %(project)s AND (b.orchestra_id IS NULL OR b.orchestra_id = %(orchestra)s) AND {SPENT_NOW_SQL}
ORDER BY b.period, b.id
LIMIT 1
"""  # noqa: S608 (the table name is the model's; every value is bound)


def budget_check(*, project_id: int, orchestra: Orchestra | None) -> None:
    """Raise ``BudgetExhausted`` (429, with the reset time) when a budget of the project, or of
    ``orchestra``, is spent."""
    params = {"project": project_id, "orchestra": orchestra.pk if orchestra else None,
              **current_period_params(timezone.now())}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_EXHAUSTED_COVERING_SQL, params)
        row = cursor.fetchone()
    if row is not None:
        budget = Budget.objects.get(pk=row[0])
        raise BudgetExhausted(budget=budget, reset_at=period_reset_at(budget.period, budget.period_start))


def _spent_since(*, project_id: int, orchestra_id: int | None, currency: str, since: dt.date) -> Decimal:
    records = UsageRecord.objects.filter(
        project_id=project_id, currency=currency, created_at__gte=dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    )
    if orchestra_id is not None:
        records = records.filter(orchestra_id=orchestra_id)
    return records.aggregate(s=Sum("cost"))["s"] or Decimal(0)


@transaction.atomic
def budget_create(
    *, actor: Any, project: Any, limit: Decimal, currency: str, period: str, orchestra: Orchestra | None = None
) -> Budget:
    """A budget of ``project`` (or of one of its orchestras), counting what was already spent in the
    current period. Raises ``ValidationError`` naming ``orchestra`` for an orchestra of another project."""
    if orchestra is not None and orchestra.project_id != project.pk:
        raise ValidationError({"orchestra": ["The orchestra does not belong to this project."]})
    start = period_start(period)
    budget = Budget.objects.create(
        project=project,
        orchestra=orchestra,
        limit=limit,
        currency=currency,
        period=period,
        period_start=start,
        spent=_spent_since(
            project_id=project.pk, orchestra_id=orchestra.pk if orchestra else None, currency=currency, since=start
        ),
        created_by=actor,
    )
    budget.alerted_percent = max([t for t in THRESHOLDS if budget.spent * 100 >= budget.limit * t], default=0)
    budget.save(update_fields=["alerted_percent"])
    audit.record(
        "budget.created",
        actor=actor,
        resource=budget,
        details={"limit": str(limit), "currency": currency, "period": period, "orchestra": budget.orchestra_id},
        project=project.slug,
    )
    return budget


@transaction.atomic
def budget_update(*, budget: Budget, actor: Any, **changes: Any) -> Budget:
    """Change limit, currency or period; the alerts start again if the budget is no longer crossed."""
    before = {name: str(getattr(budget, name)) for name in changes}
    for name, value in changes.items():
        setattr(budget, name, value)
    if "period" in changes or "currency" in changes:
        budget.period_start = period_start(budget.period)
        budget.spent = _spent_since(
            project_id=budget.project_id,
            orchestra_id=budget.orchestra_id,
            currency=budget.currency,
            since=budget.period_start,
        )
    budget.alerted_percent = max([t for t in THRESHOLDS if budget.spent * 100 >= budget.limit * t], default=0)
    budget.save()
    audit.record(
        "budget.updated",
        actor=actor,
        resource=budget,
        details={name: [before[name], str(getattr(budget, name))] for name in changes},
        project=budget.project.slug,
    )
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget, actor: Any) -> None:
    details = {"limit": str(budget.limit), "currency": budget.currency, "orchestra": budget.orchestra_id}
    pk = budget.pk
    project = budget.project.slug
    budget.delete()
    audit.record(
        "budget.deleted",
        actor=actor,
        resource_type="agents.budget",
        resource_id=pk,
        details=details,
        project=project,
    )


def _charge(*, project_id: int, orchestra_id: int | None, costs: dict[str, Decimal], now: dt.datetime) -> None:
    """Add ``costs`` (per currency) to the budgets covering the project and orchestra, announcing thresholds."""
    covering = _covering(project_id=project_id, orchestra_id=orchestra_id)
    budgets = Budget.objects.select_for_update().filter(covering, currency__in=list(costs)).select_related("project")
    for budget in budgets.order_by("id"):
        start = period_start(budget.period, now)
        if budget.period_start != start:
            budget.period_start, budget.spent, budget.alerted_percent = start, Decimal(0), 0
        budget.spent += costs[budget.currency]
        crossed = [t for t in THRESHOLDS if t > budget.alerted_percent and budget.spent * 100 >= budget.limit * t]
        if crossed:
            budget.alerted_percent = crossed[-1]
        budget.save(update_fields=["period_start", "spent", "alerted_percent", "updated_at"])
        for threshold in crossed:
            audit.record(
                "budget.exhausted" if threshold == 100 else "budget.threshold_crossed",
                resource=budget,
                details={
                    "percent": threshold,
                    "spent": str(budget.spent),
                    "limit": str(budget.limit),
                    "currency": budget.currency,
                    "orchestra": budget.orchestra_id,
                    "reset_at": period_reset_at(budget.period, start).isoformat(),
                },
                project=budget.project.slug,
            )


def usage_record(*, task: Task, agent: Agent | None, items: list[dict[str, Any]], source: str) -> list[UsageRecord]:
    """Store validated usage ``items`` of ``task`` and charge its budgets, in the caller's transaction.

    Items are dicts with ``model``, ``input_tokens``, ``output_tokens``, ``cost`` (a ``Decimal``) and
    ``currency``, as ``UsageItemSerializer`` validates them. Task events call this with
    ``source="event"``. Returns the records.
    """
    if not items:
        return []
    now = timezone.now()
    records = UsageRecord.objects.bulk_create(
        UsageRecord(
            task=task,
            project_id=task.project_id,
            orchestra_id=task.orchestra_id,
            agent=agent,
            submitter_id=task.submitter_id,
            source=source,
            created_at=now,
            **item,
        )
        for item in items
    )
    costs: dict[str, Decimal] = defaultdict(Decimal)
    for item in items:
        costs[item["currency"]] += item["cost"]
    _charge(project_id=task.project_id, orchestra_id=task.orchestra_id, costs=costs, now=now)
    slug = task.project.slug
    transaction.on_commit(lambda: metrics.observe_usage(slug, records))
    return records
