"""symphony.db.postgresql holds ``NOTIFY`` back until COMMIT and sends both in one round trip: a
listener on another connection sees exactly what ``pg_notify`` inside the transaction would have
delivered (all of it at commit, nothing after a rollback, nothing from a savepoint rolled back to)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from agents.services.notify import NOTIFY_CHANNEL, task_notify

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def listener():
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432, user=settings["USER"],
        dbname=settings["NAME"], autocommit=True,
    ) as listen:  # fmt: skip
        listen.execute(f"LISTEN {NOTIFY_CHANNEL}")

        def received(wait: float = 0.5) -> list[str]:
            # notifies() returns what has arrived within the wait; commits are delivered before it ends.
            return [n.payload for n in listen.notifies(timeout=wait, stop_after=None)]

        yield received


def _sent_statements(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in context.captured_queries if "pg_notify" in q["sql"]]


def test_notifications_of_a_transaction_arrive_at_its_commit_in_order_without_a_statement_of_their_own(listener):
    with CaptureQueriesContext(connection) as context, transaction.atomic():
        connection.cursor().execute("SELECT 1")
        task_notify(task_id=1)
        task_notify(task_id=2)
        task_notify(task_id=3)
        assert connection.pending_notifications == [(NOTIFY_CHANNEL, "1"), (NOTIFY_CHANNEL, "2"), (NOTIFY_CHANNEL, "3")]
        assert listener(0.2) == []  # nothing before the commit
    assert _sent_statements(context) == []
    assert listener() == ["1", "2", "3"]
    assert connection.pending_notifications == []


def test_a_rolled_back_transaction_notifies_nothing_and_one_with_no_statement_still_notifies(listener):
    with pytest.raises(RuntimeError), transaction.atomic():
        task_notify(task_id=7)
        raise RuntimeError("abandon")
    assert connection.pending_notifications == []
    with transaction.atomic():
        task_notify(task_id=8)
    assert listener() == ["8"]


def test_a_savepoint_rolled_back_to_drops_only_what_was_queued_inside_it(listener):
    with transaction.atomic():
        task_notify(task_id=1)
        with pytest.raises(RuntimeError), transaction.atomic():
            task_notify(task_id=2)
            raise RuntimeError("inner part fails")
        with transaction.atomic():
            task_notify(task_id=3)
    assert listener() == ["1", "3"]


def test_outside_a_transaction_a_notification_is_sent_at_once(listener):
    with CaptureQueriesContext(connection) as context:
        task_notify(task_id=5)
    assert len(_sent_statements(context)) == 1
    assert listener() == ["5"]


def test_a_notification_that_fails_leaves_the_transaction_uncommitted_and_the_connection_usable(listener):
    from agents.models import Orchestra

    with pytest.raises(DatabaseError, match="payload string too long"), transaction.atomic():
        Orchestra.objects.create(name="kept-only-if-committed", project_id=_project_id())
        connection.notify_at_commit(NOTIFY_CHANNEL, ["x" * 9000])  # PostgreSQL's limit is 8000 bytes
    assert not Orchestra.objects.filter(name="kept-only-if-committed").exists()
    assert listener(0.2) == []
    with transaction.atomic():
        task_notify(task_id=9)
    assert listener() == ["9"]


def _project_id() -> int:
    from accounts.models import Project

    return Project.objects.get_or_create(slug="notify-test", defaults={"name": "Notify test"})[0].pk
