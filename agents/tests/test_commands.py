"""Management commands: seed_demo (idempotent, keys written once with mode 0600)."""

from __future__ import annotations

import json
import stat

import pytest
from django.core.management import call_command

from agents.models import Agent, Orchestra, Task
from agents.tests.conftest import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_it_seeds_the_demo_once_and_writes_working_keys_privately(var_dir, capsys):
    call_command("seed_demo", submit=3)
    path = var_dir / "demo_agents.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    orchestra = Orchestra.objects.get(name="demo")
    assert orchestra.state == "running"
    assert sorted(a.name for a in orchestra.agents.all()) == ["demo-agent-1", "demo-agent-2"]
    assert Task.objects.filter(orchestra=orchestra, status="pending").count() == 3
    # The keys work: an agent claims, the submitter submits.
    agent_api = Api(data["agents"][0]["key"])
    assert len(agent_api.post("/api/v1/agent/claim/", {"max_tasks": 3}).json()["tasks"]) == 3
    r = Api(data["submit_key"]).post("/api/v1/tasks/", {"orchestra": data["orchestra"], "kind": "echo"})
    assert r.status_code == 201
    assert data["agents"][0]["key"] not in capsys.readouterr().out

    before = path.read_text()
    call_command("seed_demo")
    assert path.read_text() == before  # not rewritten: the keys are shown (written) once
    assert Agent.objects.filter(name__startswith="demo-agent").count() == 2
    assert Orchestra.objects.filter(name="demo").count() == 1


def test_it_reissues_the_keys_when_the_file_is_gone(var_dir):
    call_command("seed_demo")
    path = var_dir / "demo_agents.json"
    old = json.loads(path.read_text())["agents"][0]["key"]
    path.unlink()
    call_command("seed_demo")
    new = json.loads(path.read_text())["agents"][0]["key"]
    assert new != old
    assert Api(old).post("/api/v1/agent/heartbeat/").status_code == 401
    assert Api(new).post("/api/v1/agent/heartbeat/").status_code == 200
