"""Reads of schedules shared by the API and the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from workflows.scheduling.models import Schedule, ScheduleFiring


def schedule_list(*, viewer: Any, api_key: Any = None) -> QuerySet[Schedule]:
    """Schedules the viewer may see, by name, with project, orchestra and creator loaded.

    A viewer whose API key is restricted to a project sees that project's schedules only; every
    other viewer sees those of every project (as tasks and workflow runs are listed today).
    """
    schedules = Schedule.objects.select_related("project", "orchestra", "created_by").order_by("name", "id")
    project_id = getattr(api_key, "project_id", None)
    return schedules.filter(project_id=project_id) if project_id else schedules


def schedule_firings(*, schedule: Schedule) -> QuerySet[ScheduleFiring]:
    """The schedule's firings, newest first."""
    return ScheduleFiring.objects.filter(schedule=schedule).order_by("-fired_at", "-id")
