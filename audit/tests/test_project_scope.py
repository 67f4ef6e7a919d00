"""The audit trail is scoped by project: an analyst bound in alpha lists and exports alpha's events
only; a global audit:read sees every event."""

from __future__ import annotations

import json
from typing import Any

import pytest

import audit
from accounts.models import Role, RoleBinding

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(project_factory: Any) -> None:
    project_factory(slug="alpha")
    project_factory(slug="beta")
    for project in ("alpha", "beta", None):
        audit.record("resource.created", project=project, details={"where": project})


def analyst_in_alpha(make_user: Any, make_api: Any) -> Any:
    from accounts.models import Project

    user = make_user()
    RoleBinding.objects.create(
        user=user, role=Role.objects.get(name="analyst"), project=Project.objects.get(slug="alpha")
    )
    return make_api(user=user)


def _projects(rows: list[dict[str, Any]]) -> set[str]:
    return {row["project"] for row in rows if row["event_type"] == "resource.created"}


def test_an_analyst_in_alpha_lists_alphas_events_only(trail: None, make_user: Any, make_api: Any) -> None:
    r = analyst_in_alpha(make_user, make_api).get("/api/v1/audit-events/")
    assert r.status_code == 200, r.content
    assert _projects(r.json()["results"]) == {"alpha"}


def test_an_analyst_in_alpha_exports_alphas_events_only(trail: None, make_user: Any, make_api: Any) -> None:
    api = analyst_in_alpha(make_user, make_api)
    r = api.get("/api/v1/audit-events/export/", {"format": "jsonl"})
    assert r.status_code == 200, r.content
    rows = [json.loads(line) for line in b"".join(r.streaming_content).decode().splitlines() if line]
    assert _projects(rows) == {"alpha"}


def test_a_global_auditor_sees_every_event(trail: None, make_api: Any) -> None:
    r = make_api("analyst").get("/api/v1/audit-events/")
    assert _projects(r.json()["results"]) == {"alpha", "beta", ""}
