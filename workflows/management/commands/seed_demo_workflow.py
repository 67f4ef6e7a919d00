"""``manage.py seed_demo_workflow``: the demo workflow of ``make run`` (after ``seed_demo``), submitted once.

Fan-out to child tasks, fan-in over ``upstream``, then an approval step, so a newcomer finds one
approval waiting for them in the admin (Workflows > Approvals) and sees the run finish once approved.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from agents.models import Orchestra
from workflows import services

DEMO_STEPS: list[dict[str, Any]] = [
    {"key": "split", "kind": "split_words", "input": {"text": "Symphony runs workflows\nof steps\nand waits for you"}},
    {"key": "title", "kind": "word_count", "input": {"text": "A demo workflow"}},
    {"key": "total", "kind": "sum_words", "depends_on": ["split", "title"]},
    {
        "key": "review", "type": "approval", "depends_on": ["total"], "approvers": "orchestra:control",
        "question": "Publish the word count?", "timeout_seconds": 7 * 86400,
    },
    {"key": "publish", "kind": "echo", "input": {"published": True}, "depends_on": ["review"]},
]  # fmt: skip


class Command(BaseCommand):
    help = "Submit the demo workflow (with an approval step) to the demo orchestra, once."

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username="demo").first()
        orchestra = Orchestra.objects.filter(name="demo").first()
        if user is None or orchestra is None:
            raise CommandError("Run manage.py seed_demo first: the demo user and orchestra are missing.")
        run, created = services.workflow_submit(
            submitter=user, orchestra=orchestra, name="demo: count words, then wait for approval",
            steps=DEMO_STEPS, idempotency_key="seed-demo-workflow",
        )  # fmt: skip
        state = "submitted" if created else "already submitted"
        self.stdout.write(f"Demo workflow {state}: run {run.pk} ({run.status}); approve it in the admin.")
