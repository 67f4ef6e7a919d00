"""The list endpoints make a fixed number of queries, however many rows the page holds (issue 7).

Each test warms the API key cache with a first request (the key's own lookup is not the point),
then counts the queries of the same request at two page sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agents.tests.factories import OrchestraFactory, TaskFactory


def _warm(api: Any, path: str) -> None:
    assert api.get(path).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("agents", "params", "queries", "shown"),
    [
        (1, {}, 2, 1),  # the page (one row more than it shows: none, so no COUNT), its memberships
        (12, {}, 2, 12),
        (12, {"page_size": "12"}, 2, 12),
        (12, {"page_size": "5"}, 3, 5),  # the page, COUNT (a row beyond it), the memberships
        (12, {"page_size": "5", "page": "2"}, 3, 5),  # COUNT (to check the page), the page, the memberships
    ],
)
def test_it_lists_agents_in_two_queries_or_three_past_one_page(
    agents: int,
    params: dict[str, str],
    queries: int,
    shown: int,
    admin_api: Any,
    make_agent: Callable[..., Any],
    django_assert_num_queries: Any,
) -> None:
    orchestras = [OrchestraFactory(), OrchestraFactory()]
    for i in range(agents):
        make_agent(orchestra=orchestras[i % 2])
    orchestras[1].agents.add(*[o.agents.first() for o in orchestras[:1]])
    _warm(admin_api, "/api/v1/agents/")
    with django_assert_num_queries(queries):
        response = admin_api.get("/api/v1/agents/", params)
    body = response.json()
    rows = body["results"]
    assert body["count"] == agents
    assert len(rows) == shown
    assert all(row["owner"] == "fleet-owner" and row["api_key_prefix"] for row in rows)
    by_name = sorted(orchestras, key=lambda o: o.name)
    assert rows[0]["orchestras"] == [o.pk for o in by_name if o.agents.filter(name=rows[0]["name"]).exists()]


@pytest.mark.django_db
def test_it_shows_the_same_agent_in_the_list_and_in_detail(admin_api: Any, make_agent: Callable[..., Any]) -> None:
    first, second = OrchestraFactory(name="b-orchestra"), OrchestraFactory(name="a-orchestra")
    agent = make_agent(orchestra=first).agent
    second.agents.add(agent)
    listed = admin_api.get("/api/v1/agents/").json()["results"][0]
    detail = admin_api.get(f"/api/v1/agents/{agent.pk}/").json()
    assert listed == detail
    assert listed["orchestras"] == [second.pk, first.pk]  # by orchestra name, as before


@pytest.mark.django_db
@pytest.mark.parametrize("members", [1, 12])
def test_it_lists_orchestras_in_three_queries(
    members: int, admin_api: Any, make_agent: Callable[..., Any], django_assert_num_queries: Any
) -> None:
    for _ in range(3):
        orchestra = OrchestraFactory()
        for _member in range(members):
            make_agent(orchestra=orchestra)
    _warm(admin_api, "/api/v1/orchestras/")
    with django_assert_num_queries(3):  # count, the page, the members' ids
        response = admin_api.get("/api/v1/orchestras/")
    assert [len(row["agents"]) for row in response.json()["results"]] == [members] * 3


@pytest.mark.django_db
@pytest.mark.parametrize("tasks", [1, 12])
def test_it_lists_tasks_in_two_queries(tasks: int, admin_api: Any, django_assert_num_queries: Any) -> None:
    TaskFactory.create_batch(tasks)
    _warm(admin_api, "/api/v1/tasks/")
    with django_assert_num_queries(2):  # count, the page with the submitters' usernames
        response = admin_api.get("/api/v1/tasks/")
    assert len(response.json()["results"]) == tasks
    assert all(row["submitter"] for row in response.json()["results"])
