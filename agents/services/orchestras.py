"""Writes on orchestras: create, update, delete, lifecycle transitions, membership."""

from __future__ import annotations

from typing import Any

import structlog
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from agents.exceptions import OrchestraStateConflict
from agents.models import Agent, Orchestra, Task
from agents.services.notify import pending_notify

log = structlog.get_logger(__name__)


# action -> (states it may start from, resulting state, audit event)
_TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "start": (("draft", "stopped"), "running", "orchestra.started"),
    "pause": (("running",), "paused", "orchestra.paused"),
    "resume": (("paused",), "running", "orchestra.resumed"),
    "stop": (("draft", "running", "paused"), "stopped", "orchestra.stopped"),
}


@transaction.atomic
def orchestra_create(
    *, actor: Any, name: str, description: str = "", agents: list[Agent] | None = None, project: Any = None
) -> Orchestra:
    """Create an orchestra in the draft state in ``project`` (default: the ``default`` project).

    Raises ``ValidationError`` naming the field (an agent of another project included).
    """
    orchestra = Orchestra(name=name, description=description, created_by=actor)
    if project is not None:
        orchestra.project = project
    _require_same_project(orchestra, agents or [])
    orchestra.full_clean(exclude=["created_by"], validate_constraints=False)
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
    if agents is not None:
        _require_same_project(orchestra, agents)
    changed = []
    for field, value in (("name", name), ("description", description)):
        if value is not None and getattr(orchestra, field) != value:
            setattr(orchestra, field, value)
            changed.append(field)
    if changed:
        orchestra.full_clean(exclude=["created_by"], validate_constraints=False)
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
    if target == Orchestra.State.RUNNING:  # its pending tasks are claimable again: wake its waiting members
        pending_notify(project_id=orchestra.project_id, orchestra_id=orchestra.pk, count=0)
    return orchestra


def _require_same_project(orchestra: Orchestra, agents: list[Agent]) -> None:
    """Members are agents of the orchestra's own project."""
    foreign = sorted(agent.pk for agent in agents if agent.project_id != orchestra.project_id)
    if foreign:
        raise ValidationError({"agents": [f"Agents {foreign} do not belong to the orchestra's project."]})


@transaction.atomic
def orchestra_add_agents(*, orchestra: Orchestra, actor: Any, agents: list[Agent]) -> Orchestra:
    """Add member agents (already-members are ignored), auditing each addition.

    Raises ``ValidationError`` (agents) for an agent of another project, before adding any.
    """
    _require_same_project(orchestra, agents)
    current = set(orchestra.agents.values_list("id", flat=True))
    for agent in agents:
        if agent.pk in current:
            continue
        orchestra.agents.add(agent)
        current.add(agent.pk)
        audit.record("orchestra.member.added", actor=actor, resource=orchestra, details={"agent": agent.name})
        if orchestra.state == Orchestra.State.RUNNING:  # a new member waiting for work may take its tasks
            pending_notify(project_id=orchestra.project_id, agent_id=agent.pk, count=0)
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
