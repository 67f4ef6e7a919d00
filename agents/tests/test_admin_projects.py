"""The operator console is scoped by project like the API."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Role, RoleBinding
from agents.tests.factories import OrchestraFactory

pytestmark = pytest.mark.django_db


def test_a_user_bound_in_alpha_sees_only_alphas_objects(client: Any, make_user: Any, project_factory: Any) -> None:
    alpha, beta = project_factory(slug="alpha"), project_factory(slug="beta")
    mine = OrchestraFactory(project=alpha, name="alpha-orchestra")
    theirs = OrchestraFactory(project=beta, name="beta-orchestra")
    user = make_user(username="olga", is_staff=True)
    RoleBinding.objects.create(user=user, role=Role.objects.get(name="viewer"), project=alpha)
    client.force_login(user)
    page = client.get("/admin/agents/orchestra/")
    assert page.status_code == 200
    assert "alpha-orchestra" in page.content.decode() and "beta-orchestra" not in page.content.decode()
    assert client.get(f"/admin/agents/orchestra/{mine.pk}/change/").status_code == 200
    # Another project's object: Django's "does not exist" answer, as for a missing id.
    assert client.get(f"/admin/agents/orchestra/{theirs.pk}/change/").status_code in (302, 404)
    missing = client.get("/admin/agents/orchestra/999999/change/")
    assert client.get(f"/admin/agents/orchestra/{theirs.pk}/change/").status_code == missing.status_code


def test_a_global_operator_gets_a_project_filter(client: Any, make_user: Any, project_factory: Any) -> None:
    OrchestraFactory(project=project_factory(slug="alpha"))
    OrchestraFactory(project=project_factory(slug="beta"))
    client.force_login(make_user("admin", username="ada", is_staff=True))
    page = client.get("/admin/agents/orchestra/")
    assert "project__id__exact" in page.content.decode()
