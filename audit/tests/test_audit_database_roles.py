"""What the application's database role can do to the audit table on PostgreSQL: append, nothing else.

These tests connect as an ordinary role holding every privilege on every table (as a thief with
the application's credentials would), not as the superuser the rest of the suite uses.
"""

from __future__ import annotations

import io

import psycopg
import pytest
from django.core.management import CommandError, call_command

import audit
from audit.models import AuditEvent
from audit.tests.conftest import RETENTION_ROLE, acting_as
from audit.verification import verify_chain

pytestmark = pytest.mark.postgres

COLUMNS = (
    "occurred_at, event_type, severity, outcome, actor_name, api_key_prefix, user_agent, resource_type,"
    " resource_id, action, details, request_id, trace_id, prev_hash"
)


@pytest.fixture
def committed_chain(app_connection, audit_sealing):
    events = [audit.record("resource.updated", resource_type="agents.agent", resource_id=str(n)) for n in range(4)]
    audit_sealing.flush()  # sealed, and no background sealer left to seal the rows the tests add by hand
    return [AuditEvent.objects.get(pk=event.pk) for event in events]


def _insert(app: psycopg.Connection, *, chain_seq=None, hash=None, prev_hash="") -> None:
    app.execute(
        f"INSERT INTO audit_auditevent ({COLUMNS}, chain_seq, hash) VALUES"  # noqa: S608
        " (now(), 'auth.login', 'info', 'success', 'ghost', '', '', '', '', '', '{}', '', '', %s, %s, %s)",
        [prev_hash, chain_seq, hash],
    )


@pytest.mark.parametrize(
    ("chain_seq", "hash"),
    [(0, "a" * 64), (-1, "b" * 64), (None, "c" * 64), (7, None)],
    ids=["position-0", "negative-position", "hash-without-position", "position-without-hash"],
)
def test_it_refuses_a_row_inserted_before_or_beside_the_chain(app_connection, committed_chain, chain_seq, hash):
    with pytest.raises(psycopg.errors.CheckViolation, match="audit_sealed_consistently"):
        _insert(app_connection, chain_seq=chain_seq, hash=hash)
    assert AuditEvent.objects.count() == 4
    assert verify_chain().checked == 4


def test_an_appended_row_joins_the_verified_chain_like_any_recorded_event(app_connection, committed_chain):
    # The application's role must be able to append (that is how events are recorded): a row it
    # inserts by hand is sealed into the chain and verified, never shown beside it unverified.
    _insert(app_connection)
    result = verify_chain()
    assert result.ok and result.checked == 5 and result.unsealed == 0
    assert AuditEvent.objects.get(actor_name="ghost").chain_seq == 5


def test_it_refuses_a_seal_that_puts_a_row_outside_the_chain(app_connection, committed_chain):
    _insert(app_connection)
    pending = AuditEvent.objects.get(actor_name="ghost").pk
    with pytest.raises(psycopg.errors.CheckViolation):
        app_connection.execute(
            "UPDATE audit_auditevent SET chain_seq = -5, hash = %s WHERE id = %s", ["d" * 64, pending]
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        app_connection.execute("UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["e" * 64, pending])


@pytest.mark.parametrize(
    ("setting", "statement"),
    [
        ("symphony.audit_purge", "DELETE FROM audit_auditevent WHERE chain_seq >= 3"),
        ("symphony.audit_purge", "DELETE FROM audit_auditevent WHERE chain_seq <= 2"),
        ("symphony.audit_allow_truncate", "TRUNCATE audit_auditevent"),
        ("symphony.audit_purge", "UPDATE audit_auditevent SET actor_name = 'x'"),
    ],
    ids=["delete-newest", "delete-oldest", "truncate", "edit"],
)
def test_the_old_escape_settings_open_nothing(app_connection, committed_chain, setting, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), app_connection.transaction():
        app_connection.execute(f"SET LOCAL {setting} = 'on'")
        app_connection.execute(statement)
    assert AuditEvent.objects.count() == 4
    assert not AuditEvent.objects.filter(actor_name="x").exists()


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_no_update_delete",
        "ALTER TABLE audit_auditevent DROP CONSTRAINT audit_sealed_consistently",
        "SET session_replication_role = replica",
        "CREATE OR REPLACE FUNCTION audit_auditevent_append_only() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN OLD; END $$",
        "GRANT symphony_audit_purger TO symphony_test_app",
        "DROP TABLE audit_auditevent",
    ],
    ids=["disable-trigger", "drop-constraint", "replication-role", "replace-function", "grant-purger", "drop"],
)
def test_it_cannot_switch_the_guards_off(app_connection, committed_chain, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_connection.execute(statement)
    assert verify_chain().checked == 4


def test_audit_purge_refuses_the_applications_role(app_connection, committed_chain):
    with pytest.raises(CommandError, match="member of symphony_audit_purger"), acting_as("symphony_test_app"):
        call_command("audit_purge", "--before", "2999-01-01", stdout=io.StringIO())
    assert AuditEvent.objects.count() == 4


def test_a_member_of_symphony_audit_purger_may_purge(app_connection, committed_chain):
    out = io.StringIO()
    with acting_as(RETENTION_ROLE):
        call_command("audit_purge", "--before", "2999-01-01", stdout=out)
    assert "purged 4 audit events" in out.getvalue()
    assert list(AuditEvent.objects.values_list("event_type", flat=True)) == ["audit.purged"]
    assert verify_chain().ok
