"""Symphony's PostgreSQL backend: django-prometheus's (query metrics) on ``symphony.db``'s bounded
psycopg connections. ``ENGINE = "symphony.db.postgresql"``; settings choose it for ``DATABASE_URL``."""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django_prometheus.db.backends.postgresql.base import DatabaseWrapper as PrometheusDatabaseWrapper

from symphony import db


class _Driver:
    """The psycopg module as Django's backend uses it (``Database``), except that ``connect`` makes
    ``BoundedConnection`` objects. Django reads its exception classes from here too."""

    connect = staticmethod(db.connect)

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


class DatabaseWrapper(PrometheusDatabaseWrapper):
    Database = _Driver()

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
