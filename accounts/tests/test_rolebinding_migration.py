"""The migration to RoleBinding keeps every existing grant, as a manual binding."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("accounts", "0004_apikey_verbose_name")]
AFTER = [("accounts", "0005_rolebinding_ssoidentity")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_existing_grants_become_manual_bindings():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    user = old.get_model("accounts", "User").objects.create(username="old-timer")
    role = old.get_model("accounts", "Role").objects.get(name="operator")
    user.roles.add(role)

    executor = MigrationExecutor(connection)  # a fresh graph: the applied set changed
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    binding = new.get_model("accounts", "RoleBinding").objects.get(user_id=user.pk)
    assert (binding.role_id, binding.source) == (role.pk, "manual")
    assert binding.created_at is not None

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # back to the latest for the other tests
