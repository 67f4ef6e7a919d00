"""The workflows tests reuse the agents fixtures (users with roles, keys, agents, a JSON client)."""

from agents.tests.conftest import (  # noqa: F401 - fixtures
    admin_api,
    fleet_owner,
    make_agent,
    make_api,
    make_user,
    operator_api,
    orchestra,
)
