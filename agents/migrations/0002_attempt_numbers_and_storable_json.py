"""Attempt numbers that are never reused: ``Task.last_attempt`` and one number per attempt of a task.

Until now a retry reset ``attempts`` to 0, and the next claim reused number 1, so a stale holder of
the first attempt could report over the new one. Existing rows: the attempts of each task keep their
numbers in claim order except where one repeats an earlier number; that one and the later ones are
moved up (a task never retried is untouched). If a retried task is running during the upgrade, its
holder's next extend, complete or fail answers 409 lease_lost and the task goes back to the queue
when the lease expires, as for any lost lease. ``last_attempt`` is the highest number of each task.
"""

from django.db import migrations, models
from django.db.models import Count, Max, OuterRef, Subquery
from django.db.models.functions import Coalesce

import agents.models


def number_attempts(apps, schema_editor):
    Task = apps.get_model("agents", "Task")
    TaskAttempt = apps.get_model("agents", "TaskAttempt")
    repeated = (
        TaskAttempt.objects.values("task_id").annotate(n=Count("id"), distinct=Count("number", distinct=True))
    ).filter(n__gt=models.F("distinct"))
    for task_id in [row["task_id"] for row in repeated]:
        previous, changed = 0, []
        for attempt in TaskAttempt.objects.filter(task_id=task_id).order_by("id"):
            if attempt.number <= previous:
                attempt.number = previous + 1
                changed.append(attempt)
            previous = attempt.number
        TaskAttempt.objects.bulk_update(changed, ["number"])
    highest = TaskAttempt.objects.filter(task_id=OuterRef("pk")).values("task_id").annotate(top=Max("number"))
    Task.objects.update(last_attempt=Coalesce(Subquery(highest.values("top")[:1]), models.F("attempts")))


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="last_attempt",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Number of the latest attempt: the lease token of its holder. Never reused for this task, retries included.",
            ),
        ),
        migrations.RunPython(number_attempts, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="agent",
            name="metadata",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Free-form JSON object (last metrics included).",
                validators=[agents.models.validate_storable_json],
            ),
        ),
        migrations.AlterField(
            model_name="task",
            name="attempts",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Claims counted against max_attempts (each claim is one; a retry starts again at 0).",
            ),
        ),
        migrations.AlterField(
            model_name="task",
            name="input",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="JSON input given to the handler (size-limited).",
                validators=[agents.models.validate_storable_json],
            ),
        ),
        migrations.AlterField(
            model_name="task",
            name="result",
            field=models.JSONField(
                blank=True,
                help_text="What the handler returned.",
                null=True,
                validators=[agents.models.validate_storable_json],
            ),
        ),
        migrations.AddConstraint(
            model_name="taskattempt",
            constraint=models.UniqueConstraint(fields=("task", "number"), name="task_attempt_number_unique"),
        ),
    ]
