from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from audit.tests.factories import AuditEventFactory, UserFactory


@pytest.fixture
def auditor(db):
    return UserFactory(username="auditor", codes=["audit:read"])


@pytest.fixture
def exporter(db):
    return UserFactory(username="exporter", codes=["audit:read", "audit:export"])


@pytest.fixture
def auditor_client(client, auditor):
    client.force_login(auditor)
    return client


@pytest.fixture
def exporter_client(client, exporter):
    client.force_login(exporter)
    return client


@pytest.fixture
def event_factory(db):
    return AuditEventFactory


@contextmanager
def tampering():
    """Run raw SQL against the audit table as an attacker with table access would.

    On PostgreSQL the append-only trigger is bypassed for the block (``session_replication_role``
    needs a superuser, which the test database role is); SQLite has no trigger.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")


@pytest.fixture
def tamper():
    return tampering
