"""/api/v1/agents/: registration with a key shown once, updates, trust rules, deletion."""

from __future__ import annotations

import pytest

from accounts.models import ApiKey
from agents.models import Agent, Task
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_it_creates_an_agent_and_shows_its_key_once(operator_api):
    r = operator_api.post(
        "/api/v1/agents/", {"name": "reviewer", "type": "code_reviewer", "capabilities": ["python", "review"]}
    )
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["name"] == "reviewer"
    assert body["capabilities"] == ["python", "review"]
    assert body["status"] == "offline"
    assert body["trust_level"] == "untrusted"
    assert body["api_key"].startswith("sym_")
    agent = Agent.objects.get(pk=body["id"])
    assert agent.api_key.prefix == body["api_key_prefix"]
    assert body["api_key"] not in str(ApiKey.objects.values_list())
    assert AuditEvent.objects.filter(event_type="agent.created", resource_id=str(agent.pk)).exists()
    # The key is never shown again.
    again = operator_api.get(f"/api/v1/agents/{agent.pk}/").json()
    assert "api_key" not in again
    assert body["api_key"] not in str(operator_api.get("/api/v1/agents/").json())


def test_it_binds_the_key_to_the_agent_with_no_other_powers(operator_api):
    body = operator_api.post("/api/v1/agents/", {"name": "bound", "capabilities": []}).json()
    from agents.tests.conftest import Api

    agent_api = Api(body["api_key"])
    assert agent_api.post("/api/v1/agent/heartbeat/", {"status": "idle"}).status_code == 200
    assert Agent.objects.get(pk=body["id"]).effective_status == "idle"
    # The agent key cannot act on the management API.
    assert agent_api.get("/api/v1/agents/").status_code == 403
    assert agent_api.post("/api/v1/agents/", {"name": "spawned"}).status_code == 403


@pytest.mark.parametrize(
    ("capabilities", "message"),
    [
        (["Bad Name"], "capabilities"),
        (["ok", "ok"], "capabilities"),
        ("python", "capabilities"),
        ([f"c{i}" for i in range(65)], "capabilities"),
    ],
)
def test_it_rejects_bad_capabilities_naming_the_field(operator_api, capabilities, message):
    r = operator_api.post("/api/v1/agents/", {"name": "x", "capabilities": capabilities})
    assert r.status_code == 400
    assert message in r.json()["error"]["details"]
    assert not Agent.objects.exists()
    assert not ApiKey.objects.filter(name="agent:x").exists()


def test_it_refuses_a_duplicate_name(operator_api, make_agent):
    make_agent(name="taken")
    r = operator_api.post("/api/v1/agents/", {"name": "taken"})
    assert r.status_code == 400
    assert "name" in r.json()["error"]["details"]
    assert Agent.objects.count() == 1


def test_it_needs_agent_create(make_api):
    viewer = make_api("viewer")
    r = viewer.post("/api/v1/agents/", {"name": "nope"})
    assert r.status_code == 403
    assert "agent:create" in r.json()["error"]["message"]
    assert not Agent.objects.exists()


def test_it_lets_trust_verify_raise_to_verified_only(make_api, make_agent):
    agent = make_agent().agent
    operator = make_api("operator")  # holds trust:verify, not trust:manage
    r = operator.patch(f"/api/v1/agents/{agent.pk}/", {"trust_level": "medium"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "trust_change_denied"
    r = operator.patch(f"/api/v1/agents/{agent.pk}/", {"trust_level": "verified"})
    assert r.status_code == 200, r.json()
    assert r.json()["trust_level"] == "verified"
    assert AuditEvent.objects.filter(event_type="agent.trust.changed", resource_id=str(agent.pk)).count() == 1


def test_it_lets_trust_manage_set_any_level(make_api, make_agent):
    agent = make_agent().agent
    boss = make_api("super_admin")
    assert boss.patch(f"/api/v1/agents/{agent.pk}/", {"trust_level": "low"}).json()["trust_level"] == "low"


def test_it_updates_an_agent_and_audits_the_changed_fields(operator_api, make_agent):
    agent = make_agent(capabilities=["a"]).agent
    r = operator_api.patch(f"/api/v1/agents/{agent.pk}/", {"capabilities": ["b", "a"], "version": "2"})
    assert r.status_code == 200, r.json()
    assert r.json()["capabilities"] == ["a", "b"]
    event = AuditEvent.objects.filter(event_type="agent.updated").latest("id")
    assert event.details["changed"] == ["capabilities", "version"]


def test_it_deletes_an_agent_revoking_its_key_and_releasing_its_tasks(make_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    submitter = make_api("operator")
    task_id = submitter.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "echo"}).json()["id"]
    assert worker.api.post("/api/v1/agent/claim/").json()["tasks"][0]["id"] == task_id
    r = make_api("super_admin").delete(f"/api/v1/agents/{worker.agent.pk}/")
    assert r.status_code == 204
    assert Task.objects.get(pk=task_id).status == "pending"
    assert worker.api.post("/api/v1/agent/heartbeat/").status_code == 401
    assert AuditEvent.objects.filter(event_type="agent.deleted").exists()


def test_it_filters_agents_by_effective_status(operator_api, make_agent):
    alive = make_agent(name="alive")
    make_agent(name="silent")
    alive.api.post("/api/v1/agent/heartbeat/", {"status": "busy"})
    names = [a["name"] for a in operator_api.get("/api/v1/agents/", {"status": "offline"}).json()["results"]]
    assert names == ["silent"]
    names = [a["name"] for a in operator_api.get("/api/v1/agents/", {"status": "busy"}).json()["results"]]
    assert names == ["alive"]


def test_it_shows_an_agent_offline_once_its_heartbeat_is_too_old(operator_api, make_agent, settings):
    import time_machine

    worker = make_agent()
    with time_machine.travel("2026-01-01 12:00:00Z", tick=False):
        worker.api.post("/api/v1/agent/heartbeat/", {"status": "idle"})
        assert operator_api.get(f"/api/v1/agents/{worker.agent.pk}/").json()["status"] == "idle"
    with time_machine.travel("2026-01-01 12:01:31Z", tick=False):
        assert operator_api.get(f"/api/v1/agents/{worker.agent.pk}/").json()["status"] == "offline"
        from django.core.management import call_command

        call_command("reap_tasks")
    assert AuditEvent.objects.filter(event_type="agent.heartbeat_lost", resource_id=str(worker.agent.pk)).exists()


# --- the list page: plain rows shaped by agent_list_data, the same JSON as AgentSerializer ---------


@pytest.fixture
def fleet(make_agent, project_factory):
    """Agents of two projects: online and stale heartbeats, none at all, without a key, in two
    orchestras (listed by orchestra name, not id), in one, in none, with nested metadata."""
    from datetime import timedelta

    from django.utils import timezone

    from agents.tests.factories import OrchestraFactory

    beta = project_factory(slug="beta")
    zulu, alpha = OrchestraFactory(name="zulu"), OrchestraFactory(name="alpha")
    now = timezone.now()
    busy = make_agent(
        name="busy-one",
        type="tester",
        capabilities=["gpu", "python"],
        version="1.2.3",
        metadata={"metrics": {"load": [0.5, 1]}, "note": None, "ok": True},
        orchestra=zulu,
    )
    alpha.agents.add(busy.agent)
    stale = make_agent(name="stale-one", type="deployer", orchestra=alpha)
    keyless = make_agent(name="keyless-one")
    never = make_agent(name="never-seen", project=beta)
    Agent.objects.filter(pk=busy.agent.pk).update(status="busy", last_heartbeat_at=now - timedelta(seconds=1))
    Agent.objects.filter(pk=stale.agent.pk).update(status="idle", last_heartbeat_at=now - timedelta(hours=1))
    Agent.objects.filter(pk=keyless.agent.pk).update(
        status="error", trust_level="high", last_heartbeat_at=now.replace(microsecond=0) - timedelta(seconds=2)
    )
    ApiKey.objects.filter(pk=keyless.agent.api_key_id).delete()
    return {"alpha": alpha, "zulu": zulu, "beta": beta, "never": never.agent}


def test_it_lists_agents_exactly_as_the_agent_serializer_shows_them(fleet):
    from rest_framework.renderers import JSONRenderer

    from agents import selectors
    from agents.serializers import AgentSerializer, agent_list_data

    rows = list(selectors.agent_list_rows(selectors.agent_list(for_listing=True)))
    fast = agent_list_data(rows, selectors.agent_orchestra_ids([row[0] for row in rows]))
    slow = AgentSerializer(selectors.agent_list(), many=True).data
    assert JSONRenderer().render(fast) == JSONRenderer().render(slow)
    by_name = {row["name"]: row for row in fast}
    assert [row["name"] for row in fast] == ["busy-one", "keyless-one", "never-seen", "stale-one"]
    assert by_name["busy-one"]["status"] == "busy" and by_name["stale-one"]["status"] == "offline"
    assert by_name["busy-one"]["orchestras"] == [fleet["alpha"].pk, fleet["zulu"].pk]
    assert by_name["keyless-one"]["api_key_prefix"] is None and by_name["never-seen"]["project"] == "beta"


@pytest.mark.postgres
def test_postgresql_builds_the_list_entries_as_the_agent_serializer_shows_them(fleet):
    import json

    from agents import selectors
    from agents.serializers import AgentSerializer

    Agent.objects.filter(name="busy-one").update(
        metadata={"ünï": '\u2028 "quoted" \\', "big": 2**62, "float": 1.5, "nested": [{"a": None}]}
    )
    agents = list(selectors.agent_list())
    texts = selectors.agent_list_json(
        [agent.pk for agent in reversed(agents)] + [10**12]
    )  # order kept, unknown dropped
    assert [json.loads(text) for text in texts] == list(reversed(AgentSerializer(agents, many=True).data))


@pytest.mark.postgres
def test_the_list_body_escapes_line_separators_as_drf_does(admin_api, fleet):
    Agent.objects.filter(name="busy-one").update(metadata={"note": "a\u2028b\u2029c"})
    r = admin_api.get("/api/v1/agents/")
    assert b"a\\u2028b\\u2029c" in r.content and "\u2028".encode() not in r.content
    assert r.json()["results"][0]["metadata"] == {"note": "a\u2028b\u2029c"}


@pytest.mark.parametrize("accept", ["application/json; indent=2", "text/html"])
def test_the_list_asked_for_indented_or_browsable_shows_the_same_entries(admin_api, fleet, accept):
    plain = admin_api.get("/api/v1/agents/").json()
    r = admin_api.get("/api/v1/agents/", Accept=accept)
    assert r.status_code == 200
    if accept.startswith("application/json"):
        assert r.content.startswith(b'{\n  "count": 4') and r.json() == plain
    else:
        assert b"busy-one" in r.content and r["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({}, ["busy-one", "keyless-one", "never-seen", "stale-one"]),
        ({"status": "offline"}, ["never-seen", "stale-one"]),
        ({"status": "busy", "type": "tester"}, ["busy-one"]),
        ({"trust_level": "high"}, ["keyless-one"]),
        ({"orchestra": "alpha"}, ["busy-one", "stale-one"]),
        ({"name": "ONE"}, ["busy-one", "keyless-one", "stale-one"]),
        ({"project": "beta"}, ["never-seen"]),
        ({"search": "deployer"}, ["stale-one"]),
        ({"ordering": "-name"}, ["stale-one", "never-seen", "keyless-one", "busy-one"]),
        ({"ordering": "last_heartbeat_at", "project": "default"}, ["stale-one", "keyless-one", "busy-one"]),
        ({"page_size": "3", "page": "2"}, ["stale-one"]),
    ],
)
def test_it_filters_searches_orders_and_pages_agents_showing_each_as_its_detail(admin_api, fleet, params, names):
    params = {k: str(fleet["alpha"].pk) if v == "alpha" else v for k, v in params.items()}
    r = admin_api.get("/api/v1/agents/", params)
    assert r.status_code == 200, r.content
    body = r.json()
    assert [row["name"] for row in body["results"]] == names
    for row in body["results"]:
        assert row == admin_api.get(f"/api/v1/agents/{row['id']}/").json()
    if "page" in params:
        assert body["count"] == 4 and body["next"] is None
        assert body["previous"].endswith("/api/v1/agents/?page_size=3")


def test_it_lists_only_the_agents_of_the_keys_project(make_api, fleet):
    api = make_api("operator", project=fleet["beta"])
    body = api.get("/api/v1/agents/").json()
    assert body["count"] == 1
    assert body["results"] == [api.get(f"/api/v1/agents/{fleet['never'].pk}/").json()]


@pytest.mark.parametrize(
    ("params", "count", "names", "next_page"),
    [
        ({"page_size": "4"}, 4, ["busy-one", "keyless-one", "never-seen", "stale-one"], None),
        ({"page_size": "3"}, 4, ["busy-one", "keyless-one", "never-seen"], "page=2&page_size=3"),
        ({"page_size": "3", "page": "1"}, 4, ["busy-one", "keyless-one", "never-seen"], "page=2&page_size=3"),
        ({"page_size": "3", "page": "last"}, 4, ["stale-one"], None),
        ({"page_size": "3", "status": "offline"}, 2, ["never-seen", "stale-one"], None),
    ],
)
def test_it_counts_and_links_agent_pages_whether_or_not_they_hold_every_row(
    admin_api, fleet, params, count, names, next_page
):
    body = admin_api.get("/api/v1/agents/", params).json()
    assert (body["count"], [row["name"] for row in body["results"]]) == (count, names)
    assert body["next"] == (None if next_page is None else f"http://testserver/api/v1/agents/?{next_page}")


@pytest.mark.parametrize("page", ["0", "3", "x"])
def test_it_refuses_an_agent_page_that_does_not_exist_naming_page(admin_api, fleet, page):
    r = admin_api.get("/api/v1/agents/", {"page_size": "3", "page": page})
    assert r.status_code == 400
    assert list(r.json()["error"]["details"]) == ["page"]
