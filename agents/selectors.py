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

    ``for_listing`` (the API's list page) joins nothing: the page is read as plain rows by
    ``agent_list_rows`` after filtering and ordering, and its orchestra ids by ``agent_orchestra_ids``.
    Single-object reads keep the full rows, because services act on them (revoking the key,
    auditing the owner).
    """
    base = Agent.objects.all() if viewer is None else scope(Agent.objects.all(), viewer, code)
    if for_listing:
        return base.order_by("name", "id")
    return base.select_related("owner", "api_key", "project").prefetch_related("orchestras").order_by("name", "id")


#: The columns of ``agent_list_rows``, in the order of its tuples (``serializers.agent_list_data`` reads them).
AGENT_LIST_COLUMNS = (
    "id",
    "project__slug",
    "name",
    "type",
    "capabilities",
    "status",
    "trust_level",
    "version",
    "metadata",
    "owner__username",
    "api_key__prefix",
    "last_heartbeat_at",
    "created_at",
    "updated_at",
)


def agent_list_rows(agents: QuerySet[Agent]) -> QuerySet[Any]:
    """``agents`` (filtered and ordered) as tuples of ``AGENT_LIST_COLUMNS``, the project's slug, the
    owner's username and the key's prefix joined in: no Agent, Project, User or ApiKey is built per
    row. With 50 agents a page, building them and serializing them field by field was most of the
    list's CPU."""
    return agents.values_list(*AGENT_LIST_COLUMNS)


def agent_orchestra_ids(agent_ids: list[int]) -> dict[int, list[int]]:
    """The orchestra ids of each of ``agent_ids`` (ordered by orchestra name, as ``Agent.orchestra_ids``),
    from one query on the membership table; an agent of no orchestra maps to ``[]``.

    Plain SQL rather than the ORM: for a page of 50 agents the ORM's statement (each id prepared
    through the foreign key, the join and the ordering compiled) took five times the CPU.
    """
    ids: dict[int, list[int]] = {agent_id: [] for agent_id in agent_ids}
    if not ids:
        return ids
    with connection.cursor() as cursor:
        cursor.execute(_membership_sql(len(ids)), list(ids))
        for agent_id, orchestra_id in cursor.fetchall():
            ids[agent_id].append(orchestra_id)
    return ids


def agent_list_json(agent_ids: list[int]) -> list[str]:
    """The agents of ``agent_ids``, in that order, each as the JSON text of its list entry, built by
    PostgreSQL: the same values as ``serializers.agent_list_data`` (held to ``AgentSerializer`` by
    agents/tests/test_agents_api.py), its orchestra ids included, in one statement.

    Decoding two JSON columns and parsing three timestamps per row only to encode them again was most
    of the list's CPU in Python. PostgreSQL only: SQLite keeps ``agent_list_data``.
    """
    if not agent_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_AGENT_JSON_SQL, {"ids": agent_ids, "cutoff": Agent.heartbeat_cutoff()})
        found = dict(cursor.fetchall())
    return [found[agent_id] for agent_id in agent_ids if agent_id in found]


def _iso(column: str) -> str:
    """``column`` (a timestamptz) as DRF's ``DateTimeField`` renders it in UTC: ISO 8601 with a ``Z``,
    microseconds only when there are any (as ``datetime.isoformat``)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN date_trunc('second', {utc}) = {utc}"
        f""" THEN to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
        f""" ELSE to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END"""
    )


def _agent_json_sql() -> str:
    from accounts.models import ApiKey, User

    meta, through = Agent._meta, Orchestra.agents.through._meta

    def col(name: str) -> str:
        return f'a."{meta.get_field(name).column}"'

    orchestra, member = through.get_field("orchestra").column, through.get_field("agent").column
    members = (
        f'SELECT m."{orchestra}" FROM "{through.db_table}" m'  # noqa: S608 - names from the models
        f' JOIN "{Orchestra._meta.db_table}" o ON o."{Orchestra._meta.pk.column}" = m."{orchestra}"'
        f' WHERE m."{member}" = a."{meta.pk.column}"'
        f' ORDER BY o."{Orchestra._meta.get_field("name").column}", m."{orchestra}"'
    )
    fields = {
        "id": col("id"),
        "project": f'p."{Project._meta.get_field("slug").column}"',
        "name": col("name"),
        "type": col("type"),
        "capabilities": col("capabilities"),
        "status": f"CASE WHEN {col('last_heartbeat_at')} >= %(cutoff)s THEN {col('status')}"
        f" ELSE '{Agent.Status.OFFLINE.value}' END",
        "trust_level": col("trust_level"),
        "version": col("version"),
        "metadata": col("metadata"),
        "owner": f'u."{User._meta.get_field("username").column}"',
        "orchestras": f"ARRAY({members})",
        "api_key_prefix": f'k."{ApiKey._meta.get_field("prefix").column}"',
        "last_heartbeat_at": _iso(col("last_heartbeat_at")),
        "created_at": _iso(col("created_at")),
        "updated_at": _iso(col("updated_at")),
    }
    select = ", ".join(f'{sql} AS "{name}"' for name, sql in fields.items())
    # row_to_json writes the keys in the order of the select list, without spaces: as DRF renders.
    return (
        f"SELECT r.id, row_to_json(r)::text FROM (SELECT {select}"  # noqa: S608 - names from the models
        f' FROM "{meta.db_table}" a'
        f' JOIN "{Project._meta.db_table}" p ON p."{Project._meta.pk.column}" = {col("project")}'
        f' JOIN "{User._meta.db_table}" u ON u."{User._meta.pk.column}" = {col("owner")}'
        f' LEFT JOIN "{ApiKey._meta.db_table}" k ON k."{ApiKey._meta.pk.column}" = {col("api_key")}'
        f' WHERE a."{meta.pk.column}" = ANY(%(ids)s)) r'
    )


_AGENT_JSON_SQL = _agent_json_sql()


def _membership_sql(count: int) -> str:
    through, qn = Orchestra.agents.through._meta, connection.ops.quote_name
    orchestra, name = qn(Orchestra._meta.db_table), qn(Orchestra._meta.get_field("name").column)
    agent_id, orchestra_id = (qn(through.get_field(field).column) for field in ("agent", "orchestra"))
    return (
        f"SELECT m.{agent_id}, m.{orchestra_id} FROM {qn(through.db_table)} m"  # noqa: S608 - names and %s only
        f" INNER JOIN {orchestra} o ON o.{qn(Orchestra._meta.pk.column)} = m.{orchestra_id}"
        f" WHERE m.{agent_id} IN ({', '.join(['%s'] * count)}) ORDER BY o.{name}, m.{orchestra_id}"
    )


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
