"""Reads shared by the API and the admin."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.db.models import F, Prefetch, QuerySet

from accounts.access import scope
from accounts.models import Project
from agents.models import Agent, Orchestra, Task, TaskEvent
from symphony.db.rows import Columns


def agent_list(*, viewer: Any = None, code: str = "agent:read", for_listing: bool = False) -> QuerySet[Agent]:
    """Agents with owner, key and orchestra ids loaded (no query per row).

    ``for_listing`` (the API's list page) annotates the owner's username and the key's prefix instead
    of building a User and an ApiKey per row, and leaves the orchestra ids to
    ``agent_attach_orchestra_ids`` on the page: with 50 agents the related model instances and
    managers were most of the list's CPU (issue 7's benchmark). Single-object reads keep the full
    rows, because services act on them (revoking the key, auditing the owner).
    """
    base = Agent.objects.all() if viewer is None else scope(Agent.objects.all(), viewer, code)
    if for_listing:
        return (
            base.select_related("project")
            .annotate(listed_owner_username=F("owner__username"), listed_api_key_prefix=F("api_key__prefix"))
            .order_by("name", "id")
        )
    return base.select_related("owner", "api_key", "project").prefetch_related("orchestras").order_by("name", "id")


def agent_attach_orchestra_ids(agents: list[Agent]) -> list[Agent]:
    """Set ``orchestra_ids`` on each of ``agents`` from one query on the membership table; return them."""
    ids: dict[int, list[int]] = {agent.pk: [] for agent in agents}
    memberships = (
        Orchestra.agents.through.objects.filter(agent_id__in=ids)
        .order_by("orchestra__name", "orchestra_id")
        .values_list("agent_id", "orchestra_id")
    )
    for agent_id, orchestra_id in memberships:
        ids[agent_id].append(orchestra_id)
    for agent in agents:
        agent.listed_orchestra_ids = ids[agent.pk]
    return agents


def orchestra_list(
    *, viewer: Any = None, code: str = "orchestra:read", for_listing: bool = False
) -> QuerySet[Orchestra]:
    """Orchestras with their member agents prefetched (ids only on the API's list page, which shows
    nothing else of them: a full Agent row with its JSON fields per member was most of the list's cost)."""
    base = Orchestra.objects.select_related("project")
    if viewer is not None:
        base = scope(base, viewer, code)
    if for_listing:
        return base.prefetch_related(Prefetch("agents", queryset=Agent.objects.only("id"))).order_by("name", "id")
    return base.prefetch_related("agents").order_by("name", "id")


def task_list(*, viewer: Any = None, code: str = "agent:read", for_listing: bool = False) -> QuerySet[Task]:
    """Tasks newest first; with ``viewer``, only those of projects where it holds ``code``.

    ``for_listing`` loads only the submitter's username (all TaskSerializer shows of it)."""
    queryset = Task.objects.select_related("submitter", "project").order_by("-created_at", "-id")
    if viewer is not None:
        queryset = scope(queryset, viewer, code)
    if for_listing:
        fields = [field.name for field in Task._meta.concrete_fields]
        queryset = queryset.only(*fields, "submitter__username", "project__slug")
    return queryset


_AGENT, _AGENT_PROJECT = Columns(Agent, "a"), Columns(Project, "p")
_AGENT_FOR_KEY_SQL = (
    f"SELECT {_AGENT.sql}, {_AGENT_PROJECT.sql} FROM {Agent._meta.db_table} a"  # noqa: S608 (model names only)
    f" JOIN {Project._meta.db_table} p ON p.id = a.project_id WHERE a.api_key_id = %s"
)


def agent_for_key(api_key: Any) -> Agent | None:
    """The agent an API key is bound to (its project loaded), or None (a user's key, or no key).

    Every agent-protocol request starts here, so it is SQL written once rather than a queryset
    (``symphony.db.rows``): the same row as ``select_related("project").filter(api_key=...)``.
    """
    if api_key is None or not getattr(api_key, "pk", None):
        return None
    with connection.cursor() as cursor:
        cursor.execute(_AGENT_FOR_KEY_SQL, [api_key.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    agent, project = _AGENT.split(row, _AGENT_PROJECT, connection=connection)
    Agent.project.field.set_cached_value(agent, project)
    return agent


def task_events(*, task_id: int, after: int = 0, limit: int = 100) -> QuerySet[TaskEvent]:
    """The task's events with ``seq > after``, in order, at most ``limit``. Callers scope the task first."""
    return TaskEvent.objects.filter(task_id=task_id, seq__gt=after).order_by("seq")[:limit]


USAGE_GROUPS = {
    "project": "project__slug",
    "orchestra": "orchestra__name",
    "agent": "agent__name",
    "model": "model",
    "submitter": "submitter__username",
}


def usage_summary(
    *,
    group_by: str,
    since: Any = None,
    until: Any = None,
    orchestra: int | None = None,
    project: str | None = None,
    viewer: Any = None,
) -> list[dict[str, Any]]:
    """Tokens and cost summed per group (and currency: money of different currencies is never added).

    ``group_by`` is one of project, orchestra, agent, model, submitter, day (UTC). ``project`` (a slug)
    filters; with ``viewer``, only projects where it holds ``orchestra:read`` are counted.
    """
    from django.db.models import Count, Sum
    from django.db.models.functions import TruncDate

    from agents.flow_models import UsageRecord

    records = UsageRecord.objects.order_by()
    if since is not None:
        records = records.filter(created_at__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=until)
    if orchestra is not None:
        records = records.filter(orchestra_id=orchestra)
    if project:
        records = records.filter(project__slug=project)
    if viewer is not None:
        records = scope(records, viewer, "orchestra:read")
    if group_by == "day":
        records = records.annotate(key=TruncDate("created_at", tzinfo=dt.UTC))
    else:
        records = records.annotate(key=F(USAGE_GROUPS[group_by]))
    rows = (
        records.values("key", "currency")
        .annotate(
            input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"), cost=Sum("cost"), records=Count("id")
        )
        .order_by("key", "currency")
    )
    return [{**row, "key": None if row["key"] is None else str(row["key"])} for row in rows]
