"""A small world for the console tests: projects alpha and beta, each with an orchestra, agents and
tasks in every state the dashboard counts, and staff users who see one or both."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone

PASSWORD = "correct horse battery staple"


def staff(username: str, *, role: str | None = None, project: Any = None, superuser: bool = False) -> Any:
    """A staff user holding ``role`` in ``project`` (globally when None), able to log in with PASSWORD."""
    from accounts.models import Role, RoleBinding, User

    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=True, is_superuser=superuser)
    if role:
        RoleBinding.objects.create(user=user, role=Role.objects.get(name=role), project=project)
    return user


def build_world() -> SimpleNamespace:
    """Two projects with a known number of tasks per state; returns the objects the tests name."""
    import audit
    from accounts.tests.factories import ProjectFactory
    from agents.models import Agent, Orchestra, Task, TaskAttempt
    from agents.tests.factories import TaskFactory, UserFactory

    now = timezone.now()
    submitter = UserFactory(username="submitter")
    world = SimpleNamespace(now=now)
    for slug, counts in {"alpha": (3, 2, 1, 2), "beta": (5, 1, 0, 1)}.items():
        project = ProjectFactory(slug=slug)
        orchestra = Orchestra.objects.create(name=f"{slug}-band", project=project, state="running")
        busy = Agent.objects.create(
            name=f"{slug}-busy", project=project, owner=submitter, status="busy", last_heartbeat_at=now
        )
        Agent.objects.create(
            name=f"{slug}-idle", project=project, owner=submitter, status="idle", last_heartbeat_at=now
        )
        Agent.objects.create(
            name=f"{slug}-gone",
            project=project,
            owner=submitter,
            status="busy",
            last_heartbeat_at=now - timedelta(hours=1),
        )
        pending, running, waiting, failed = counts
        made = {"pending": [], "running": [], "succeeded": [], "failed": []}
        for i in range(pending):
            made["pending"].append(
                TaskFactory(orchestra=orchestra, submitter=submitter, created_at=now - timedelta(minutes=10 + i))
            )
        for _ in range(running):
            lease = now + timedelta(minutes=1)
            task = TaskFactory(
                orchestra=orchestra,
                submitter=submitter,
                status="running",
                agent=busy,
                attempts=1,
                last_attempt=1,
                claimed_at=now,
                started_at=now,
                lease_expires_at=lease,
            )
            TaskAttempt.objects.create(task=task, number=1, agent=busy, claimed_at=now)
            made["running"].append(task)
        for _ in range(waiting):
            TaskFactory(orchestra=orchestra, submitter=submitter, status="waiting_approval")
        for _ in range(failed):
            made["failed"].append(
                TaskFactory(
                    orchestra=orchestra,
                    submitter=submitter,
                    status="failed",
                    finished_at=now - timedelta(minutes=5),
                    error="boom",
                )
            )
        TaskFactory(orchestra=orchestra, submitter=submitter, status="failed", finished_at=now - timedelta(hours=3))
        for _ in range(2):
            made["succeeded"].append(
                TaskFactory(
                    orchestra=orchestra, submitter=submitter, status="succeeded", finished_at=now - timedelta(minutes=2)
                )
            )
        audit.record("task.expired", resource_type="agents.task", resource_id=made["pending"][0].pk, project=slug)
        setattr(world, slug, SimpleNamespace(project=project, orchestra=orchestra, busy=busy, tasks=made))
    world.task_model = Task
    return world


@pytest.fixture
def world(db: None, fast_passwords: None) -> SimpleNamespace:
    world = build_world()
    world.root = staff("root", superuser=True)
    world.operator = staff("alpha-op", role="operator", project=world.alpha.project)
    world.viewer = staff("alpha-viewer", role="viewer", project=world.alpha.project)
    return world
