"""Fixtures for the agents tests: users with roles, their API keys, agents with theirs, a JSON client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from agents import services
from agents.models import Agent
from agents.tests.factories import OrchestraFactory
from tests.api import Api


@dataclass
class AgentWithKey:
    agent: Agent
    key: str
    api: Api


@pytest.fixture
def fleet_owner(make_user: Callable[..., Any]) -> Any:
    return make_user("operator", username="fleet-owner")


@pytest.fixture
def make_agent(fleet_owner: Any) -> Callable[..., AgentWithKey]:
    """Register an agent through ``agent_create`` and return it with its raw key and an ``Api``."""
    counter = iter(range(1, 10_000))

    def make(capabilities: list[str] | None = None, orchestra: Any = None, **fields: Any) -> AgentWithKey:
        fields.setdefault("name", f"agent-{next(counter)}")
        agent, raw = services.agent_create(owner=fleet_owner, capabilities=capabilities or [], **fields)
        if orchestra is not None:
            orchestra.agents.add(agent)
        return AgentWithKey(agent=agent, key=raw, api=Api(raw))

    return make


@pytest.fixture
def orchestra(db: None) -> Any:
    return OrchestraFactory(name="main")
