"""Data migrations of the agents app, run backwards and forwards on the test database."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from agents.models import Task, TaskAttempt
from agents.tests.factories import OrchestraFactory, TaskFactory

BEFORE = [("agents", "0001_initial")]
AFTER = [("agents", "0002_attempt_numbers_and_storable_json")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _migrate_to_latest():
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


# serialized_rollback: the flush after it then leaves the database as the next such test expects it.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_numbers_the_attempts_of_retried_tasks_once_each():
    """Issue 10: a retry used to reset the count, so a retried task's attempts repeated numbers."""
    old = _migrate(BEFORE)
    try:
        Task_, Attempt = old.get_model("agents", "Task"), old.get_model("agents", "TaskAttempt")
        orchestra = old.get_model("agents", "Orchestra").objects.create(name="old")
        now = timezone.now()
        retried = Task_.objects.create(kind="echo", orchestra=orchestra, attempts=1, max_attempts=3)
        plain = Task_.objects.create(kind="echo", orchestra=orchestra, attempts=2, max_attempts=3)
        for number in (1, 2, 1):  # two attempts, a retry, the first attempt after it
            Attempt.objects.create(task=retried, number=number, claimed_at=now)
        for number in (1, 2):
            Attempt.objects.create(task=plain, number=number, claimed_at=now)
        fresh = Task_.objects.create(kind="echo", orchestra=orchestra)
    finally:
        _migrate(AFTER)
        _migrate_to_latest()  # the models below, and the tests after this one, expect every migration

    numbers = {
        t: list(TaskAttempt.objects.filter(task_id=t).values_list("number", flat=True)) for t in (retried.pk, plain.pk)
    }
    assert numbers == {retried.pk: [1, 2, 3], plain.pk: [1, 2]}
    last = dict(Task.objects.values_list("pk", "last_attempt"))
    assert last == {retried.pk: 3, plain.pk: 2, fresh.pk: 0}


@pytest.mark.django_db
def test_it_refuses_a_repeated_attempt_number_in_the_database():
    task = TaskFactory(orchestra=OrchestraFactory())
    TaskAttempt.objects.create(task=task, number=1, claimed_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskAttempt.objects.create(task=task, number=1, claimed_at=timezone.now())
