"""Symphony's PostgreSQL backend: django-prometheus's (query metrics) on ``symphony.db``'s bounded
psycopg connections. ``ENGINE = "symphony.db.postgresql"``; settings choose it for ``DATABASE_URL``."""

from __future__ import annotations

import select
from collections.abc import Iterable
from typing import Any

import psycopg
from django.db.backends.utils import debug_transaction
from django_prometheus.db.backends.postgresql.base import DatabaseWrapper as PrometheusDatabaseWrapper

from symphony import db


class _Driver:
    """The psycopg module as Django's backend uses it (``Database``), except that ``connect`` makes
    ``BoundedConnection`` objects. Django reads its exception classes from here too."""

    connect = staticmethod(db.connect)

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


class DatabaseWrapper(PrometheusDatabaseWrapper):
    """Also holds back ``NOTIFY`` until commit (``notify_at_commit``), to send it with the COMMIT."""

    Database = _Driver()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._notifications: list[tuple[str, str]] = []
        self._notification_marks: dict[str, int] = {}  # savepoint id -> notifications before it

    def notify_at_commit(self, channel: str, payloads: Iterable[str]) -> None:
        """``pg_notify(channel, payload)`` for each payload when the current transaction commits, in
        the COMMIT's own round trip; none if it rolls back, and those queued since a savepoint are
        dropped when it is rolled back to (what ``pg_notify`` run inside it would do)."""
        self._notifications.extend((channel, payload) for payload in payloads)

    @property
    def pending_notifications(self) -> list[tuple[str, str]]:
        """What ``notify_at_commit`` holds for the current transaction, in order (a copy)."""
        return list(self._notifications)

    def _forget_notifications(self) -> None:
        self._notifications, self._notification_marks = [], {}

    def _commit(self) -> None:
        notifications = self._notifications
        self._forget_notifications()
        if not notifications or self.connection is None:
            return super()._commit()
        with debug_transaction(self, "COMMIT"), self.wrap_database_errors:
            return self.connection.commit(notifications)

    def _rollback(self) -> None:
        self._forget_notifications()
        return super()._rollback()

    def _close(self) -> None:
        self._forget_notifications()
        return super()._close()

    def _savepoint(self, sid: str) -> None:
        super()._savepoint(sid)
        self._notification_marks[sid] = len(self._notifications)

    def _savepoint_rollback(self, sid: str) -> None:
        super()._savepoint_rollback(sid)
        mark = self._notification_marks.pop(sid, None)
        if mark is not None:
            del self._notifications[mark:]

    def _savepoint_commit(self, sid: str) -> None:
        super()._savepoint_commit(sid)
        self._notification_marks.pop(sid, None)

    def is_usable(self) -> bool:
        """Whether the persistent connection may serve this request (``CONN_HEALTH_CHECKS``), mostly
        without a round trip.

        Django's own check runs ``SELECT 1`` before each request's first query: one statement more
        on every request, the largest share of a one-statement call such as the heartbeat. An idle
        connection has nothing to read, so a readable socket means the server closed it or said
        something on its own (a restart's "terminating connection", a crashed backend's EOF). Only
        then is the round trip made, to decide. A connection that stalled without closing is not
        caught by either check; the client-side bound (``symphony.db``) answers that one with 503.
        """
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.pgconn.socket], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return False
        return not readable or super().is_usable()
