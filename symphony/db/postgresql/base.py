"""Symphony's PostgreSQL backend: django-prometheus's (query metrics) on ``symphony.db``'s bounded
psycopg connections. ``ENGINE = "symphony.db.postgresql"``; settings choose it for ``DATABASE_URL``."""

from __future__ import annotations

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
