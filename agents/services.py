"""Writes on agents, orchestras and tasks. Each one is audited inside its own transaction.

Dispatch uses conditional UPDATEs (``filter(status=...).update(...)``) rather than read-check-write,
so a claim, a cancel and a lease expiry racing on one task cannot both win. Claims lock candidate
rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite runs every write transaction
with ``BEGIN IMMEDIATE`` (settings), which serialises claimers instead.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Case, DateTimeField, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

import audit
from accounts.services import api_key_create
from agents import metrics
from agents.exceptions import (
    LeaseLost,
    NotTaskHolder,
    OrchestraStateConflict,
    PayloadTooLarge,
    TaskStateConflict,
    TrustChangeDenied,
)
from agents.models import Agent, Orchestra, Task, TaskAttempt, normalize_capabilities

log = structlog.get_logger(__name__)

#: Scopes of an agent-bound key: none. The agent protocol (heartbeat, claim, extend, complete, fail)
#: needs only the binding, so a leaked agent key cannot read or change anything else.
AGENT_KEY_SCOPES: list[str] = []
AGENT_UPDATABLE_FIELDS = ("name", "type", "capabilities", "trust_level", "version", "metadata")


# --- agents ---------------------------------------------------------------------------------------


def _check_trust_change(*, actor: Any, old: str, new: str) -> None:
    """Raising trust to verified needs trust:verify (or trust:manage); any other change needs trust:manage."""
    if old == new:
        return
    if new == Agent.TrustLevel.VERIFIED and (actor.has_perm("trust:verify") or actor.has_perm("trust:manage")):
        return
    if new != Agent.TrustLevel.VERIFIED and actor.has_perm("trust:manage"):
        return
    needed = "trust:verify" if new == Agent.TrustLevel.VERIFIED else "trust:manage"
    raise TrustChangeDenied(f"Changing trust_level from {old} to {new} needs the '{needed}' permission.")


def _save_agent(agent: Agent) -> None:
    agent.capabilities = normalize_capabilities(agent.capabilities or [])
    agent.full_clean(exclude=["owner", "api_key"])
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError:  # a concurrent create took the name between full_clean and save
        raise ValidationError({"name": ["An agent with this name already exists."]}) from None


@transaction.atomic
def agent_create(
    *,
    owner: Any,
    name: str,
    type: str = Agent.Type.CUSTOM,
    capabilities: list[str] | None = None,
    trust_level: str = Agent.TrustLevel.UNTRUSTED,
    version: str = "",
    metadata: dict[str, Any] | None = None,
    actor: Any = None,
) -> tuple[Agent, str]:
    """Register an agent and issue its agent-bound API key; return ``(agent, raw_key)``.

    The raw key exists only in this return value. Raises ``ValidationError`` naming the field (name
    taken, bad capabilities) and ``TrustChangeDenied`` when ``actor`` may not set ``trust_level``.
    """
    actor = actor or owner
    _check_trust_change(actor=actor, old=Agent.TrustLevel.UNTRUSTED, new=trust_level)
    agent = Agent(
        name=name,
        type=type,
        capabilities=capabilities or [],
        trust_level=trust_level,
        version=version,
        metadata=metadata or {},
        owner=owner,
    )
    _save_agent(agent)
    key, raw = api_key_create(owner=owner, name=f"agent:{name}"[:100], scopes=AGENT_KEY_SCOPES, actor=actor)
    agent.api_key = key
    agent.save(update_fields=["api_key"])
    audit.record(
        "agent.created",
        actor=actor,
        resource=agent,
        details={"name": name, "type": type, "capabilities": agent.capabilities, "api_key_prefix": key.prefix},
    )
    log.info("agent_created", agent=name, key_prefix=key.prefix)
    return agent, raw


@transaction.atomic
def agent_key_reissue(*, agent: Agent, actor: Any) -> str:
    """Revoke the agent's key and issue a new one; return the new raw key (shown once)."""
    from accounts.models import ApiKey

    now = timezone.now()
    if agent.api_key_id:
        ApiKey.objects.filter(pk=agent.api_key_id, revoked_at__isnull=True).update(revoked_at=now)
        audit.record(
            "apikey.revoked",
            actor=actor,
            resource_type="accounts.apikey",
            resource_id=agent.api_key_id,
            details={"reason": "agent key reissued", "agent": agent.name},
        )
    key, raw = api_key_create(owner=agent.owner, name=f"agent:{agent.name}"[:100], scopes=AGENT_KEY_SCOPES, actor=actor)
    agent.api_key = key
    agent.save(update_fields=["api_key", "updated_at"])
    audit.record("agent.updated", actor=actor, resource=agent, details={"changed": ["api_key"], "prefix": key.prefix})
    return raw


@transaction.atomic
def agent_update(*, agent: Agent, actor: Any, data: dict[str, Any]) -> Agent:
    """Change an agent's fields (``AGENT_UPDATABLE_FIELDS``); a trust change is checked and audited apart.

    Raises ``ValidationError`` naming the field and ``TrustChangeDenied``.
    """
    unknown = sorted(set(data) - set(AGENT_UPDATABLE_FIELDS))
    if unknown:
        raise ValidationError({field: ["This field cannot be changed."] for field in unknown})
    old_trust = agent.trust_level
    if "trust_level" in data:
        _check_trust_change(actor=actor, old=old_trust, new=data["trust_level"])
    changed = [field for field, value in data.items() if getattr(agent, field) != value]
    for field in changed:
        setattr(agent, field, data[field])
    if not changed:
        return agent
    _save_agent(agent)
    audit.record("agent.updated", actor=actor, resource=agent, details={"changed": sorted(changed)})
    if agent.trust_level != old_trust:
        audit.record(
            "agent.trust.changed", actor=actor, resource=agent, details={"from": old_trust, "to": agent.trust_level}
        )
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent, actor: Any) -> None:
    """Delete an agent: tasks it holds go back to the queue, its key is revoked, tasks addressed to it go."""
    now = timezone.now()
    held = list(Task.objects.filter(agent=agent, status=Task.Status.RUNNING).values_list("id", flat=True))
    if held:
        _release(task_ids=held, now=now, reason=f"agent {agent.name} was deleted")
    if agent.api_key_id:
        from accounts.models import ApiKey

        ApiKey.objects.filter(pk=agent.api_key_id, revoked_at__isnull=True).update(revoked_at=now)
        audit.record(
            "apikey.revoked",
            actor=actor,
            resource_type="accounts.apikey",
            resource_id=agent.api_key_id,
            details={"reason": "agent deleted", "agent": agent.name},
        )
    audit.record("agent.deleted", actor=actor, resource=agent, details={"name": agent.name, "released": held})
    agent.delete()


def agent_heartbeat(
    *, agent: Agent, status: str, metrics: dict[str, Any] | None = None, version: str | None = None
) -> list[int]:
    """Record that ``agent`` is alive; return the ids of tasks it holds that were cancelled.

    Not audited (agents beat every few seconds); losing the heartbeat is (``agent_mark_offline``).
    """
    now = timezone.now()
    changes: dict[str, Any] = {"status": status, "last_heartbeat_at": now, "updated_at": now}
    if version is not None:
        changes["version"] = version
    if metrics is not None:
        changes["metadata"] = {**(agent.metadata or {}), "last_metrics": metrics}
    Agent.objects.filter(pk=agent.pk).update(**changes)
    for field, value in changes.items():
        setattr(agent, field, value)
    cancelled = Task.objects.filter(agent=agent, status=Task.Status.CANCELLED, lease_expires_at__gt=now)
    return list(cancelled.order_by("id").values_list("id", flat=True))


@transaction.atomic
def agent_mark_offline() -> int:
    """Mark agents whose heartbeat is older than the timeout offline, auditing ``agent.heartbeat_lost``."""
    cutoff = Agent.heartbeat_cutoff()
    stale = list(Agent.objects.offline(cutoff).exclude(status=Agent.Status.OFFLINE).values("id", "name"))
    for row in stale:
        if Agent.objects.filter(pk=row["id"]).offline(cutoff).exclude(status="offline").update(status="offline"):
            audit.record(
                "agent.heartbeat_lost",
                resource_type="agents.agent",
                resource_id=row["id"],
                details={"name": row["name"], "timeout_seconds": settings.SYMPHONY_AGENT_HEARTBEAT_TIMEOUT},
            )
    return len(stale)


# --- orchestras -----------------------------------------------------------------------------------

# action -> (states it may start from, resulting state, audit event)
_TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "start": (("draft", "stopped"), "running", "orchestra.started"),
    "pause": (("running",), "paused", "orchestra.paused"),
    "resume": (("paused",), "running", "orchestra.resumed"),
    "stop": (("draft", "running", "paused"), "stopped", "orchestra.stopped"),
}


@transaction.atomic
def orchestra_create(*, actor: Any, name: str, description: str = "", agents: list[Agent] | None = None) -> Orchestra:
    """Create an orchestra in the draft state. Raises ``ValidationError`` naming the field."""
    orchestra = Orchestra(name=name, description=description, created_by=actor)
    orchestra.full_clean(exclude=["created_by"])
    try:
        with transaction.atomic():
            orchestra.save()
    except IntegrityError:
        raise ValidationError({"name": ["An orchestra with this name already exists."]}) from None
    if agents:
        orchestra.agents.set(agents)
    audit.record(
        "orchestra.created",
        actor=actor,
        resource=orchestra,
        details={"name": name, "agents": sorted(a.pk for a in agents or [])},
    )
    return orchestra


@transaction.atomic
def orchestra_update(
    *, orchestra: Orchestra, actor: Any, name: str | None = None, description: str | None = None,
    agents: list[Agent] | None = None,
) -> Orchestra:  # fmt: skip
    """Change name, description or the whole membership. Raises ``ValidationError`` naming the field."""
    changed = []
    for field, value in (("name", name), ("description", description)):
        if value is not None and getattr(orchestra, field) != value:
            setattr(orchestra, field, value)
            changed.append(field)
    if changed:
        orchestra.full_clean(exclude=["created_by"])
        try:
            with transaction.atomic():
                orchestra.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:
            raise ValidationError({"name": ["An orchestra with this name already exists."]}) from None
    if agents is not None:
        current = set(orchestra.agents.values_list("id", flat=True))
        wanted = {a.pk for a in agents}
        if current != wanted:
            orchestra_add_agents(orchestra=orchestra, actor=actor, agents=[a for a in agents if a.pk not in current])
            orchestra_remove_agents(
                orchestra=orchestra, actor=actor, agents=list(Agent.objects.filter(pk__in=current - wanted))
            )
            changed.append("agents")
    if changed:
        audit.record("orchestra.updated", actor=actor, resource=orchestra, details={"changed": changed})
    return orchestra


@transaction.atomic
def orchestra_delete(*, orchestra: Orchestra, actor: Any) -> None:
    """Delete an orchestra and its finished tasks. Raises ``OrchestraStateConflict`` while tasks are
    pending or running in it (stop it and cancel them first)."""
    active = orchestra.tasks.filter(status__in=Task.CANCELLABLE).count()
    if active:
        raise OrchestraStateConflict(f"The orchestra has {active} pending or running task(s); cancel them first.")
    audit.record("orchestra.deleted", actor=actor, resource=orchestra, details={"name": orchestra.name})
    orchestra.delete()


@transaction.atomic
def orchestra_transition(*, orchestra: Orchestra, actor: Any, action: str) -> Orchestra:
    """Apply a lifecycle action: start, pause, resume or stop. Raises ``OrchestraStateConflict``."""
    sources, target, event = _TRANSITIONS[action]
    changed = Orchestra.objects.filter(pk=orchestra.pk, state__in=sources).update(
        state=target, updated_at=timezone.now()
    )
    orchestra.refresh_from_db()
    if not changed:
        raise OrchestraStateConflict(
            f"Cannot {action} an orchestra that is {orchestra.state}; it must be {' or '.join(sources)}."
        )
    audit.record(event, actor=actor, resource=orchestra, details={"from": list(sources), "to": target})
    return orchestra


@transaction.atomic
def orchestra_add_agents(*, orchestra: Orchestra, actor: Any, agents: list[Agent]) -> Orchestra:
    """Add member agents (already-members are ignored), auditing each addition."""
    current = set(orchestra.agents.values_list("id", flat=True))
    for agent in agents:
        if agent.pk in current:
            continue
        orchestra.agents.add(agent)
        current.add(agent.pk)
        audit.record("orchestra.member.added", actor=actor, resource=orchestra, details={"agent": agent.name})
    return orchestra


@transaction.atomic
def orchestra_remove_agents(*, orchestra: Orchestra, actor: Any, agents: list[Agent]) -> Orchestra:
    """Remove member agents (non-members are ignored). Tasks they hold keep running to completion."""
    current = set(orchestra.agents.values_list("id", flat=True))
    for agent in agents:
        if agent.pk not in current:
            continue
        orchestra.agents.remove(agent)
        current.discard(agent.pk)
        audit.record("orchestra.member.removed", actor=actor, resource=orchestra, details={"agent": agent.name})
    return orchestra


# --- tasks: submission and operator actions -------------------------------------------------------


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def check_json_size(field: str, value: Any, limit: int) -> None:
    """Raise ``PayloadTooLarge`` (413, naming ``field``) when ``value`` serialises to more than ``limit`` bytes."""
    size = json_size(value)
    if size > limit:
        raise PayloadTooLarge(field, size, limit)


@transaction.atomic
def task_submit(
    *,
    submitter: Any,
    kind: str,
    input: Any = None,
    orchestra: Orchestra | None = None,
    target_agent: Agent | None = None,
    required_capabilities: list[str] | None = None,
    priority: int = Task.Priority.NORMAL,
    max_attempts: int = 3,
    idempotency_key: str | None = None,
    traceparent: str = "",
) -> tuple[Task, bool]:
    """Queue a task into ``orchestra`` or for ``target_agent``; return ``(task, created)``.

    With an ``idempotency_key`` already used by the same submitter, the existing task is returned
    and ``created`` is False (nothing else is checked or changed). Raises ``PayloadTooLarge`` for an
    oversize input, ``ValidationError`` naming the field, ``OrchestraStateConflict`` for a stopped
    orchestra.
    """
    if idempotency_key:
        existing = Task.objects.filter(submitter=submitter, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    check_json_size("input", input if input is not None else {}, settings.SYMPHONY_TASK_MAX_INPUT_BYTES)
    if orchestra is None and target_agent is None:
        raise ValidationError({"orchestra": ["A task needs an orchestra (or use agents/{id}/execute/)."]})
    if orchestra is not None and orchestra.state == Orchestra.State.STOPPED:
        raise OrchestraStateConflict(f"Orchestra {orchestra.name} is stopped; start it before submitting tasks.")
    task = Task(
        kind=kind,
        input=input if input is not None else {},
        orchestra=orchestra,
        target_agent=target_agent,
        required_capabilities=normalize_capabilities(required_capabilities or []),
        priority=priority,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key or "",
        traceparent=traceparent,
        submitter=submitter,
    )
    task.full_clean(exclude=["submitter", "orchestra", "target_agent", "agent"], validate_constraints=False)
    try:
        with transaction.atomic():
            task.save(force_insert=True)
    except IntegrityError:
        # Another request with the same idempotency key won the race: answer with its task.
        existing = Task.objects.filter(submitter=submitter, idempotency_key=idempotency_key).first()
        if idempotency_key and existing is not None:
            return existing, False
        raise
    audit.record(
        "task.submitted",
        actor=submitter,
        resource=task,
        details={
            "kind": kind,
            "orchestra": orchestra.pk if orchestra else None,
            "target_agent": target_agent.pk if target_agent else None,
            "priority": task.priority_label,
        },
    )
    transaction.on_commit(metrics.TASKS_SUBMITTED.inc)
    return task, True


@transaction.atomic
def task_cancel(*, task_id: int, actor: Any, reason: str = "") -> Task:
    """Cancel a pending or running task. Raises ``TaskStateConflict`` otherwise.

    A running task keeps its holder and lease, so the holder learns of it from its next heartbeat
    (or from the 409 of its next extend/complete).
    """
    now = timezone.now()
    # Conditional UPDATE, not read-check-write: a claim can land between the two.
    changed = Task.objects.filter(pk=task_id, status__in=Task.CANCELLABLE).update(
        status=Task.Status.CANCELLED, finished_at=now, updated_at=now
    )
    if not changed:
        status = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
        raise TaskStateConflict(f"Only pending or running tasks can be cancelled; this one is {status}.")
    TaskAttempt.objects.filter(task_id=task_id, outcome=TaskAttempt.Outcome.RUNNING).update(
        outcome=TaskAttempt.Outcome.CANCELLED, finished_at=now
    )
    task = Task.objects.get(pk=task_id)
    audit.record("task.cancelled", actor=actor, resource=task, details={"reason": reason})
    transaction.on_commit(lambda: metrics.observe_outcome("cancelled", None))
    return task


@transaction.atomic
def task_retry(*, task_id: int, actor: Any) -> Task:
    """Put a failed or cancelled task back in the queue with a fresh attempt budget.

    Raises ``TaskStateConflict`` for any other status.
    """
    now = timezone.now()
    changed = Task.objects.filter(pk=task_id, status__in=Task.RETRYABLE).update(
        status=Task.Status.PENDING,
        attempts=0,
        agent=None,
        lease_expires_at=None,
        result=None,
        error="",
        finished_at=None,
        updated_at=now,
    )
    if not changed:
        status = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
        raise TaskStateConflict(f"Only failed or cancelled tasks can be retried; this one is {status}.")
    task = Task.objects.get(pk=task_id)
    audit.record("task.retried", actor=actor, resource=task)
    return task


# --- tasks: the agent protocol --------------------------------------------------------------------


def lease_seconds_or_default(lease_seconds: int | None) -> int:
    if lease_seconds is None:
        return settings.SYMPHONY_TASK_LEASE_SECONDS
    return max(1, min(int(lease_seconds), settings.SYMPHONY_TASK_MAX_LEASE_SECONDS))


def task_claim(*, agent: Agent, max_tasks: int = 1, lease_seconds: int | None = None) -> list[Task]:
    """Lease up to ``max_tasks`` pending tasks to ``agent``: highest priority first, then oldest.

    Expired leases are reaped first. Each claimed task is one more attempt and one ``task.claimed``
    event. Never hands one task to two agents: PostgreSQL locks the candidates with
    ``FOR UPDATE SKIP LOCKED`` (concurrent claimers take different rows); SQLite serialises the whole
    claim transaction (``BEGIN IMMEDIATE``).
    """
    task_reap_expired()
    return _claim(agent=agent, max_tasks=max(1, min(max_tasks, settings.SYMPHONY_TASK_MAX_CLAIM)),
                  lease=lease_seconds_or_default(lease_seconds))  # fmt: skip


@transaction.atomic
def _claim(*, agent: Agent, max_tasks: int, lease: int) -> list[Task]:
    now = timezone.now()
    candidates = Task.objects.claimable(agent)
    if connection.features.has_select_for_update_skip_locked:
        candidates = candidates.select_for_update(skip_locked=True, of=("self",))
    ids = list(candidates.values_list("id", flat=True)[:max_tasks])
    if not ids:
        return []
    Task.objects.filter(pk__in=ids, status=Task.Status.PENDING).update(
        status=Task.Status.RUNNING,
        agent=agent,
        attempts=F("attempts") + 1,
        lease_expires_at=now + timedelta(seconds=lease),
        claimed_at=now,
        started_at=Coalesce("started_at", Value(now)),
        updated_at=now,
    )
    tasks = list(
        Task.objects.filter(pk__in=ids, status=Task.Status.RUNNING, agent=agent).order_by(
            "-priority", "created_at", "id"
        )
    )
    TaskAttempt.objects.bulk_create(
        [TaskAttempt(task=task, number=task.attempts, agent=agent, claimed_at=now) for task in tasks]
    )
    waits = []
    for task in tasks:
        audit.record(
            "task.claimed",
            resource=task,
            details={"agent": agent.name, "attempt": task.attempts, "lease_seconds": lease},
        )
        if task.attempts == 1:
            waits.append((now - task.created_at).total_seconds())
    transaction.on_commit(lambda: _observe_claims(len(tasks), waits))
    log.info("tasks_claimed", agent=agent.name, task_ids=[t.pk for t in tasks])
    return tasks


def _observe_claims(count: int, waits: list[float]) -> None:
    metrics.TASKS_CLAIMED.inc(count)
    for wait in waits:
        metrics.TASK_QUEUE_WAIT.observe(max(wait, 0.0))


def _holder_filter(*, task_id: int, agent: Agent, attempt: int | None) -> Any:
    """The task row, if (and only if) ``agent`` holds its current lease (and ``attempt`` matches)."""
    rows = Task.objects.filter(pk=task_id, status=Task.Status.RUNNING, agent=agent)
    return rows.filter(attempts=attempt) if attempt is not None else rows


def _lease_error(*, task_id: int, agent: Agent) -> Exception:
    """Explain why ``agent`` does not hold ``task_id``: 404 unknown, 409 it held it once, 403 it never did."""
    from rest_framework.exceptions import NotFound

    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        return NotFound("No such task.")
    if task.agent_id == agent.pk or TaskAttempt.objects.filter(task_id=task_id, agent=agent).exists():
        if task.status == Task.Status.CANCELLED:
            return LeaseLost("The task was cancelled: stop working on it.")
        if task.status == Task.Status.RUNNING and task.agent_id == agent.pk:
            return LeaseLost(f"This attempt is over: the task is on attempt {task.attempts}.")
        return LeaseLost(f"The lease moved on: the task is now {task.status}.")
    return NotTaskHolder()


@transaction.atomic
def task_extend(*, task_id: int, agent: Agent, lease_seconds: int | None = None, attempt: int | None = None) -> Task:
    """Push the holder's lease to now + ``lease_seconds`` (default lease, bounded by the maximum).

    A lease that expired but was not yet reaped can still be extended: nobody else holds the task.
    Raises ``LeaseLost`` (409) or ``NotTaskHolder`` (403).
    """
    now = timezone.now()
    expires = now + timedelta(seconds=lease_seconds_or_default(lease_seconds))
    if not _holder_filter(task_id=task_id, agent=agent, attempt=attempt).update(
        lease_expires_at=expires, updated_at=now
    ):
        raise _lease_error(task_id=task_id, agent=agent)
    return Task.objects.get(pk=task_id)


def _finish_attempt(*, task_id: int, agent: Agent, outcome: str, now: datetime) -> None:
    TaskAttempt.objects.filter(task_id=task_id, agent=agent, outcome=TaskAttempt.Outcome.RUNNING).update(
        outcome=outcome, finished_at=now
    )


@transaction.atomic
def task_complete(*, task_id: int, agent: Agent, result: Any = None, attempt: int | None = None) -> Task:
    """Record the holder's result; the task succeeds. Raises ``PayloadTooLarge`` (413, naming result),
    ``LeaseLost`` (409) or ``NotTaskHolder`` (403)."""
    check_json_size("result", result, settings.SYMPHONY_TASK_MAX_RESULT_BYTES)
    now = timezone.now()
    if not _holder_filter(task_id=task_id, agent=agent, attempt=attempt).update(
        status=Task.Status.SUCCEEDED, result=result, error="", lease_expires_at=None, finished_at=now, updated_at=now
    ):
        raise _lease_error(task_id=task_id, agent=agent)
    _finish_attempt(task_id=task_id, agent=agent, outcome=TaskAttempt.Outcome.SUCCEEDED, now=now)
    task = Task.objects.select_related("submitter").get(pk=task_id)
    audit.record("task.completed", resource=task, details={"agent": agent.name, "attempt": task.attempts})
    duration = (now - task.claimed_at).total_seconds() if task.claimed_at else None
    transaction.on_commit(lambda: metrics.observe_outcome("succeeded", duration))
    return task


@transaction.atomic
def task_fail(*, task_id: int, agent: Agent, error: str, retryable: bool = False, attempt: int | None = None) -> Task:
    """Record the holder's failure. A retryable failure with attempts left goes back to pending;
    otherwise the task fails. Raises ``LeaseLost`` (409) or ``NotTaskHolder`` (403)."""
    now = timezone.now()
    changes: dict[str, Any] = {"status": Task.Status.FAILED, "finished_at": now}
    if retryable:
        # Decided in the UPDATE itself, so the attempts read is the attempts written.
        can_retry = Q(attempts__lt=F("max_attempts"))
        changes = {
            "status": Case(When(can_retry, then=Value(Task.Status.PENDING)), default=Value(Task.Status.FAILED)),
            "agent": Case(When(can_retry, then=Value(None)), default=F("agent"), output_field=BigIntegerField()),
            "finished_at": Case(When(can_retry, then=Value(None)), default=Value(now), output_field=DateTimeField()),
        }
    updated = _holder_filter(task_id=task_id, agent=agent, attempt=attempt).update(
        **changes, error=error[:10000], lease_expires_at=None, updated_at=now
    )
    if not updated:
        raise _lease_error(task_id=task_id, agent=agent)
    _finish_attempt(task_id=task_id, agent=agent, outcome=TaskAttempt.Outcome.FAILED, now=now)
    task = Task.objects.select_related("submitter").get(pk=task_id)
    requeued = task.status == Task.Status.PENDING
    audit.record(
        "task.failed",
        resource=task,
        details={"agent": agent.name, "attempt": task.attempts, "retryable": retryable, "requeued": requeued},
    )
    duration = (now - task.claimed_at).total_seconds() if task.claimed_at else None
    transaction.on_commit(lambda: metrics.observe_outcome("requeued" if requeued else "failed", duration))
    return task


def _release(*, task_ids: list[int], now: datetime, reason: str) -> tuple[list[int], list[int]]:
    """Return running tasks to pending, or fail those out of attempts; return ``(requeued, failed)``."""
    rows = list(
        Task.objects.filter(pk__in=task_ids, status=Task.Status.RUNNING).values_list("id", "attempts", "max_attempts")
    )
    requeue = [pk for pk, attempts, max_attempts in rows if attempts < max_attempts]
    fail = [pk for pk, attempts, max_attempts in rows if attempts >= max_attempts]
    Task.objects.filter(pk__in=requeue, status=Task.Status.RUNNING).update(
        status=Task.Status.PENDING, agent=None, lease_expires_at=None, updated_at=now
    )
    Task.objects.filter(pk__in=fail, status=Task.Status.RUNNING).update(
        status=Task.Status.FAILED, lease_expires_at=None, finished_at=now, updated_at=now, error=reason[:10000]
    )
    TaskAttempt.objects.filter(task_id__in=requeue + fail, outcome=TaskAttempt.Outcome.RUNNING).update(
        outcome=TaskAttempt.Outcome.EXPIRED, finished_at=now
    )
    return requeue, fail


@transaction.atomic
def task_reap_expired(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expired leases: back to pending (the attempt stays counted) or failed after max attempts.

    Runs before every claim and from ``manage.py reap_tasks``. Rows another reaper is handling are
    skipped (``SKIP LOCKED``). Each reaped task gets a ``task.expired`` event. Returns how many.
    """
    now = now or timezone.now()
    expired = Task.objects.expired_leases(now).order_by("lease_expires_at")
    if connection.features.has_select_for_update_skip_locked:
        expired = expired.select_for_update(skip_locked=True)
    ids = list(expired.values_list("id", flat=True)[:limit])
    if not ids:
        return 0
    requeued, failed = _release(task_ids=ids, now=now, reason="The lease expired and no attempts are left.")
    for task_id in requeued + failed:
        audit.record(
            "task.expired",
            resource_type="agents.task",
            resource_id=task_id,
            details={"requeued": task_id in requeued},
        )
    log.warning("task_leases_expired", requeued=requeued, failed=failed)

    def observe() -> None:
        for _ in requeued:
            metrics.observe_outcome("expired", None)
        for _ in failed:
            metrics.observe_outcome("failed", None)

    transaction.on_commit(observe)
    return len(requeued) + len(failed)
