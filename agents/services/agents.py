"""Writes on agents: register (with the agent-bound key), update, trust, delete, heartbeat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

import audit
from accounts.services import api_key_create
from agents.exceptions import TrustChangeDenied
from agents.models import Agent, Task, normalize_capabilities
from agents.services.dispatch import release_running

log = structlog.get_logger(__name__)

#: Scopes of an agent-bound key: none. The agent protocol (heartbeat, claim, extend, complete, fail)
#: needs only the binding, so a leaked agent key cannot read or change anything else.
AGENT_KEY_SCOPES: list[str] = []
AGENT_UPDATABLE_FIELDS = ("name", "type", "capabilities", "trust_level", "version", "metadata")


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
    # Name uniqueness is per project: the insert's IntegrityError names the field (full_clean's
    # constraint check would report it under __all__).
    agent.full_clean(exclude=["owner", "api_key"], validate_constraints=False)
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
    project: Any = None,
) -> tuple[Agent, str]:
    """Register an agent in ``project`` (default: the ``default`` project) and issue its agent-bound
    API key, restricted to that project; return ``(agent, raw_key)``.

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
    if project is not None:
        agent.project = project
    _save_agent(agent)
    key, raw = api_key_create(
        owner=owner, name=f"agent:{name}"[:100], scopes=AGENT_KEY_SCOPES, actor=actor, project=agent.project
    )
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


def _revoke_agent_key(agent: Agent) -> None:
    """Revoke the agent's bound key through accounts, so its authentication cache forgets it at commit.

    The revocation is a consequence of an action already authorised on the agent (agent:update or
    agent:delete), so it runs as a system action; the audit event still names the request's user.
    """
    from accounts.services import api_key_revoke

    if agent.api_key is not None and agent.api_key.revoked_at is None:
        api_key_revoke(actor=None, key=agent.api_key)


@transaction.atomic
def agent_key_reissue(*, agent: Agent, actor: Any) -> str:
    """Revoke the agent's key and issue a new one; return the new raw key (shown once).

    The new key belongs to the agent's owner, like the first one.
    """
    _revoke_agent_key(agent)
    key, raw = api_key_create(
        owner=agent.owner, name=f"agent:{agent.name}"[:100], scopes=AGENT_KEY_SCOPES, project=agent.project
    )
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
        release_running(task_ids=held, now=now, reason=f"agent {agent.name} was deleted")
    _revoke_agent_key(agent)
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


@dataclass(frozen=True)
class Heartbeat:
    """What the heartbeat answers: the agent as it now is, and its held tasks that were cancelled."""

    agent_id: int
    name: str
    status: str
    cancelled_tasks: list[int]


#: ``agent_heartbeat`` for the agent behind a key, as one PostgreSQL statement: the lookup, the
#: update (metrics merged into the stored metadata by the database, so a concurrent edit of other
#: metadata keys is kept) and the cancelled held tasks. Written once: through the ORM these were three
#: statements and most of a heartbeat's CPU.
#:
#: When the statement is its own transaction it commits with ``synchronous_commit = off``: the worker
#: then does not wait for the WAL flush, most of a heartbeat's wall time. Safe because a heartbeat
#: guards nothing: a crash of PostgreSQL can lose only the last fraction of a second of beats (the
#: agent beats again), WAL order means no later durable commit survives without it, and leases,
#: completions and the audit trail still commit synchronously. Never inside someone else's
#: transaction, whose durability it would weaken.
_HEARTBEAT_SQL = f"""
WITH async_commit AS (SELECT set_config('synchronous_commit',
    CASE WHEN %(relax)s THEN 'off' ELSE current_setting('synchronous_commit') END, true)),
beat AS (
    UPDATE {Agent._meta.db_table} SET status = %(status)s, last_heartbeat_at = %(now)s, updated_at = %(now)s,
        version = COALESCE(%(version)s, version),
        metadata = CASE WHEN %(metrics)s::jsonb IS NULL THEN metadata ELSE
            COALESCE(metadata, '{{}}'::jsonb) || jsonb_build_object('last_metrics', %(metrics)s::jsonb) END
    WHERE api_key_id = %(key)s
    RETURNING id, name, status
)
SELECT beat.id, beat.name, beat.status, ARRAY(
    SELECT t.id FROM {Task._meta.db_table} t
    WHERE t.agent_id = beat.id AND t.status = %(cancelled)s AND t.lease_expires_at > %(now)s ORDER BY t.id)
FROM beat, async_commit
"""  # noqa: S608 (names from the models; every value is bound)


def heartbeat_for_key(
    *, api_key: Any, status: str, metrics: dict[str, Any] | None = None, version: str | None = None
) -> Heartbeat | None:
    """``agent_heartbeat`` for the agent bound to ``api_key``; None when no agent is (a user's key).

    One statement on PostgreSQL; elsewhere the lookup and ``agent_heartbeat``'s two.
    """
    if connection.vendor != "postgresql":
        from agents.selectors import agent_for_key

        agent = agent_for_key(api_key)
        if agent is None:
            return None
        cancelled = agent_heartbeat(agent=agent, status=status, metrics=metrics, version=version)
        return Heartbeat(agent_id=agent.pk, name=agent.name, status=agent.effective_status, cancelled_tasks=cancelled)
    metadata = Agent._meta.get_field("metadata")
    params = {
        "status": status,
        "now": timezone.now(),
        "version": version,
        "metrics": None if metrics is None else metadata.get_db_prep_value(metrics, connection),
        "key": api_key.pk,
        "cancelled": Task.Status.CANCELLED,
        "relax": not connection.in_atomic_block,
    }
    with connection.cursor() as cursor:
        cursor.execute(_HEARTBEAT_SQL, params)
        row = cursor.fetchone()
    if row is None:
        return None
    agent_id, name, reported, cancelled = row
    # Just beaten, so online: the effective status is the reported one.
    return Heartbeat(agent_id=agent_id, name=name, status=reported, cancelled_tasks=list(cancelled))


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
