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
def tampering(*, constraints: bool = True):
    """Run raw SQL against the audit table as its owner or a database superuser could.

    On PostgreSQL the append-only trigger is bypassed for the block (``session_replication_role``
    needs a superuser, which the test database role is); SQLite has no trigger. With
    ``constraints=False`` the table's CHECK constraints are off too, and on PostgreSQL the unique
    constraint on ``chain_seq``: what the table's owner can drop.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
            if not constraints:
                cursor.execute("ALTER TABLE audit_auditevent DROP CONSTRAINT audit_sealed_consistently")
                cursor.execute(
                    "SELECT conname FROM pg_constraint WHERE conrelid = 'audit_auditevent'::regclass AND contype = 'u'"
                    " AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = 'audit_auditevent'::regclass"
                    " AND attname = 'chain_seq')]"
                )
                for (name,) in cursor.fetchall():
                    cursor.execute(f'ALTER TABLE audit_auditevent DROP CONSTRAINT "{name}"')
        elif not constraints:
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        try:
            yield cursor
        finally:  # SQLite's pragma belongs to the connection, whatever happens to the transaction
            if connection.vendor == "sqlite" and not constraints:
                cursor.execute("PRAGMA ignore_check_constraints = OFF")
        if connection.vendor == "postgresql":  # after an error the savepoint's rollback undoes it
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")


@pytest.fixture
def tamper():
    return tampering


#: An ordinary role with what Symphony's application role is given in production (docs/DEPLOYMENT.md):
#: every privilege on every table and sequence, but not their ownership, not superuser, and not a
#: member of symphony_audit_purger. Roles are cluster-wide; this one is created once and kept.
APP_ROLE = "symphony_test_app"
#: A role for the retention job: the application's privileges plus membership of symphony_audit_purger.
RETENTION_ROLE = "symphony_test_retention"


@pytest.fixture(scope="session")
def app_roles(django_db_setup, django_db_blocker):
    """Create the two roles (once per cluster) and grant them this test database's tables."""
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            pytest.skip("database roles need PostgreSQL")
        with connection.cursor() as cursor:
            for role, extra in [(APP_ROLE, ""), (RETENTION_ROLE, f" IN ROLE {APP_ROLE}, symphony_audit_purger")]:
                cursor.execute(
                    f"DO $$ BEGIN CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{extra};"
                    " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
                )
            database = connection.ops.quote_name(connection.settings_dict["NAME"])
            cursor.execute(f"GRANT CONNECT ON DATABASE {database} TO {APP_ROLE}")
            cursor.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
            cursor.execute(f"GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
            cursor.execute(f"GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    return APP_ROLE, RETENTION_ROLE


@pytest.fixture
def app_connection(app_roles, transactional_db, django_db_serialized_rollback):
    """A psycopg connection to the test database as the application's role (autocommit).

    Transactional (with serialized rollback, as the suite's other transactional tests): what the
    test sets up through Django is committed, so this second connection sees it, as an attacker
    holding the application's credentials would.
    """
    import psycopg

    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"] or None, port=params["PORT"] or None, dbname=params["NAME"], user=APP_ROLE, autocommit=True
    ) as app:
        yield app


@contextmanager
def acting_as(role: str):
    """Run Django's own connection as ``role`` for the block (``SET LOCAL ROLE``: privileges of that role only)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        yield
        cursor.execute("RESET ROLE")  # after an error the savepoint's rollback undoes SET LOCAL
