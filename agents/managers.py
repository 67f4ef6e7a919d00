"""QuerySets: the reusable lookups of dispatch (``Task.objects.claimable(agent)`` and friends)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

if TYPE_CHECKING:
    from agents.models import Agent


class AgentQuerySet(models.QuerySet):
    def online(self, cutoff: datetime) -> AgentQuerySet:
        return self.filter(last_heartbeat_at__gte=cutoff)

    def offline(self, cutoff: datetime) -> AgentQuerySet:
        return self.filter(Q(last_heartbeat_at__isnull=True) | Q(last_heartbeat_at__lt=cutoff))

    def with_status(self, status: str, cutoff: datetime) -> AgentQuerySet:
        """Agents whose *effective* status is ``status`` (offline is derived from the heartbeat)."""
        if status == "offline":
            return self.offline(cutoff)
        return self.online(cutoff).filter(status=status)


class OrchestraQuerySet(models.QuerySet):
    def running(self) -> OrchestraQuerySet:
        return self.filter(state="running")


class TaskQuerySet(models.QuerySet):
    def pending(self) -> TaskQuerySet:
        return self.filter(status="pending")

    def expired_leases(self, now: datetime | None = None) -> TaskQuerySet:
        return self.filter(status="running", lease_expires_at__lt=now or timezone.now())

    def capable(self, capabilities: list[str]) -> TaskQuerySet:
        """Tasks whose required capabilities are a subset of ``capabilities``.

        PostgreSQL answers with jsonb containment (``<@``). SQLite has no containment operator for
        JSON, so the same question is asked with ``json_each``: no required capability outside the set.
        """
        if connection.vendor == "postgresql":
            return self.filter(required_capabilities__contained_by=list(capabilities))
        placeholders = ", ".join(["%s"] * len(capabilities))
        table = self.model._meta.db_table
        clause = (
            f"NOT EXISTS (SELECT 1 FROM json_each({table}.required_capabilities) AS rc"  # noqa: S608 - no user text
            f" WHERE rc.value NOT IN ({placeholders}))"
        )
        return self.extra(where=[clause], params=list(capabilities))  # noqa: S610 - parameters are bound

    def claimable(self, agent: Agent) -> TaskQuerySet:
        """Pending tasks ``agent`` may claim: of its own project, from running orchestras it belongs to
        or addressed to it, needing only capabilities it has; highest priority first, then the fairness
        turn, then oldest."""
        from agents.models import Orchestra

        orchestras = Orchestra.objects.running().filter(agents=agent).values("id")
        return (
            self.pending()
            .filter(project_id=agent.project_id)
            .filter(Q(orchestra_id__in=orchestras, target_agent__isnull=True) | Q(target_agent=agent))
            .capable(agent.capabilities or [])
            .order_by("-priority", "fair_seq", "created_at", "id")
        )
