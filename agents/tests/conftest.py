"""Fixtures for the agents tests: users with roles, their API keys, agents with theirs, a JSON client."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from accounts.services import api_key_create
from agents import services
from agents.models import Agent
from agents.tests.factories import OrchestraFactory, UserFactory


class Api:
    """The Django test client speaking JSON with one API key (or a session, or nobody)."""

    def __init__(self, key: str | None = None, client: Client | None = None) -> None:
        self.key = key
        self.client = client or Client()

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = dict(extra)
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(path, params or {}, headers=self._headers(headers))

    def post(self, path: str, data: Any = None, **headers: str) -> Any:
        body = json.dumps(data if data is not None else {})
        return self.client.post(path, body, content_type="application/json", headers=self._headers(headers))

    def patch(self, path: str, data: Any, **headers: str) -> Any:
        return self.client.patch(
            path, json.dumps(data), content_type="application/json", headers=self._headers(headers)
        )

    def put(self, path: str, data: Any, **headers: str) -> Any:
        return self.client.put(path, json.dumps(data), content_type="application/json", headers=self._headers(headers))

    def delete(self, path: str, **headers: str) -> Any:
        return self.client.delete(path, headers=self._headers(headers))


@dataclass
class AgentWithKey:
    agent: Agent
    key: str
    api: Api


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    def make(*roles: str, **fields: Any) -> Any:
        return UserFactory(roles=list(roles), **fields)

    return make


@pytest.fixture
def make_api(db: None) -> Callable[..., Api]:
    """An ``Api`` authenticated with a fresh key of a user holding ``roles`` (all their permissions)."""

    def make(*roles: str, user: Any = None, scopes: list[str] | None = None) -> Api:
        user = user or UserFactory(roles=list(roles))
        _, raw = api_key_create(owner=user, name=f"test-{user.pk}-{roles}-{scopes}", scopes=scopes)
        api = Api(raw)
        api.user = user
        return api

    return make


@pytest.fixture
def admin_api(make_api: Callable[..., Api]) -> Api:
    return make_api("super_admin")


@pytest.fixture
def operator_api(make_api: Callable[..., Api]) -> Api:
    return make_api("operator")


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
