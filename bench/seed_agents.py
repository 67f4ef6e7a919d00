"""Benchmark fixture: agents with agent-bound keys in one running orchestra, and pending tasks.

Imported by bench/seed.py and bench/dispatch_client.py after ``django.setup()``. Agents are created
through ``agents.services.agent_create`` (the product path, keys minted and audited); a second run
re-issues their keys, since raw keys are never stored. Tasks for the dispatch benchmark are bulk-inserted
(fixture data, not the product's submit path, so seeding thousands takes seconds).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

ORCHESTRA = "bench"


def _owner():
    return get_user_model().objects.get(username="bench")


def seed(count: int) -> tuple[int, list[str]]:
    from agents import services
    from agents.models import Agent, Orchestra

    owner = _owner()
    keys: list[str] = []
    agents = []
    for i in range(count):
        name = f"bench-agent-{i:03d}"
        agent = Agent.objects.filter(name=name).first()
        if agent is None:
            agent, raw = services.agent_create(owner=owner, name=name, capabilities=["bench"])
        else:
            raw = services.agent_key_reissue(agent=agent, actor=owner)
        agents.append(agent)
        keys.append(raw)
    orchestra = Orchestra.objects.filter(name=ORCHESTRA).first()
    if orchestra is None:
        orchestra = services.orchestra_create(actor=owner, name=ORCHESTRA, agents=agents)
    else:
        services.orchestra_add_agents(orchestra=orchestra, actor=owner, agents=agents)
    if orchestra.state != Orchestra.State.RUNNING:
        orchestra = services.orchestra_transition(orchestra=orchestra, actor=owner, action="start")
    return len(agents), keys


def add_pending_tasks(count: int) -> int:
    """Insert ``count`` pending tasks into the bench orchestra; drop earlier pending ones first."""
    from agents.models import Orchestra, Task

    orchestra = Orchestra.objects.get(name=ORCHESTRA)
    Task.objects.filter(orchestra=orchestra, status=Task.Status.PENDING).delete()
    owner = _owner()
    Task.objects.bulk_create(
        [Task(kind="bench", input={"n": i}, orchestra=orchestra, submitter=owner) for i in range(count)],
        batch_size=2000,
    )
    # Fresh statistics, as autovacuum would give a table that grew gradually. Without them the
    # planner, expecting a dozen pending rows, reads and sorts every one of them on each claim
    # (external merge on disk at 25,000) instead of walking task_fair_claim_idx: measured 74 ms
    # against 2 ms per claim, which would make the benchmark measure stale statistics.
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Task._meta.db_table}")
    return count
