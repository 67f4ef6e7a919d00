"""One object of every project-owned resource, for the sweeps that walk the OpenAPI schema.

The write-policy sweep and the isolation sweep both fill each schema path with a real object; they
build them here, so a new project-owned resource is added once for both.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from accounts.models import Project
from agents.models import Agent, Orchestra, Task
from agents.services import budget_create, concurrency_limit_create
from webhooks.models import Delivery
from webhooks.services import webhook_create
from workflows.models import Approval
from workflows.scheduling.services import schedule_create
from workflows.services import workflow_submit

#: A public address the SSRF guard accepts without resolving anything (the sweeps never deliver).
WEBHOOK_URL = "https://93.184.215.14/hooks"


def project_objects(*, project: Project, owner: Any, orchestra: Orchestra, running: Task) -> dict[str, dict[str, Any]]:
    """Create a workflow run waiting for an approval, a schedule, a webhook with one delivery, a budget
    and a concurrency limit in ``project``; return the schema path parameters naming each, by resource."""
    slug = project.slug
    run, _ = workflow_submit(
        submitter=owner,
        orchestra=orchestra,
        name=f"{slug}-run",
        steps=[{"key": "review", "type": "approval", "question": f"{slug} ok?", "approvers": "orchestra:control"}],
    )
    approval = Approval.objects.get(run=run)
    schedule = schedule_create(
        actor=owner, orchestra=orchestra, name=f"{slug}-schedule", interval_seconds=3600, task={"kind": "echo"}
    )
    webhook, _ = webhook_create(actor=owner, project=project, url=WEBHOOK_URL, events=["task.*"])
    delivery = Delivery.objects.create(
        webhook=webhook,
        message_id=f"msg-{slug}",
        event_type="task.succeeded",
        payload={"type": "task.succeeded", "data": {"project": slug}},
        status=Delivery.Status.FAILED,
        next_attempt_at=timezone.now(),
        give_up_at=timezone.now() + timedelta(hours=1),
    )
    budget = budget_create(actor=owner, project=project, limit=Decimal("10"), currency="USD", period="month")
    limit = concurrency_limit_create(actor=owner, project=project, key=f"{slug}-key", max_running=3)
    return {
        "agents": {"id": Agent.objects.filter(orchestras=orchestra).values_list("pk", flat=True).first()},
        "orchestras": {"id": orchestra.pk},
        "tasks": {"id": running.pk},
        "workflows": {"id": run.pk},
        "approvals": {"id": approval.pk},
        "schedules": {"id": schedule.pk},
        "webhooks": {"id": webhook.pk},
        "webhook-deliveries": {"id": delivery.pk},
        "budgets": {"id": budget.pk},
        "concurrency-limits": {"id": limit.pk},
        "projects": {"slug": slug},
    }
