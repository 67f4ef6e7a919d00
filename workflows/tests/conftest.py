"""The workflows tests reuse the agents fixtures (agents with keys, an orchestra); users, keys and JSON
clients come from the root conftest."""

from agents.tests.conftest import (  # noqa: F401 - fixtures
    fleet_owner,
    make_agent,
    orchestra,
)
