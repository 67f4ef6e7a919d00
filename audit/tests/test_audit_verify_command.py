"""manage.py audit_verify: exit 0 when intact, non-zero naming the first broken event (SQLite and PostgreSQL)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.chain import GENESIS_HASH, compute_hash
from audit.models import AuditEvent


def _verify() -> str:
    out = io.StringIO()
    call_command("audit_verify", "--chunk-size", "2", stdout=out)
    return out.getvalue()


def _broken() -> CommandError:
    with pytest.raises(CommandError) as info:
        _verify()
    assert info.value.returncode == 1
    return info.value


@pytest.fixture
def chain(event_factory):
    return [event_factory() for _ in range(5)]


@pytest.mark.django_db
def test_it_reports_an_intact_chain_and_its_head(chain):
    out = _verify()
    assert "audit chain OK: 5 events verified" in out
    assert f"head event {chain[-1].pk} (position {chain[-1].chain_seq}) hash {chain[-1].hash}" in out


@pytest.mark.django_db
def test_it_accepts_an_empty_trail():
    assert "no events" in _verify()


@pytest.mark.django_db
def test_it_names_an_edited_event(chain, tamper):
    with tamper() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_name = 'someone-else' WHERE id = %s", [chain[2].pk])
    error = _broken()
    assert f"event {chain[2].pk}:" in str(error)
    assert "content does not match" in str(error)


@pytest.mark.django_db
def test_it_names_the_event_after_a_deleted_one(chain, tamper):
    with tamper() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [chain[1].pk])
    error = _broken()
    assert f"event {chain[2].pk}:" in str(error)
    assert "prev_hash does not match" in str(error)


@pytest.mark.django_db
def test_it_detects_the_deletion_of_the_head(chain, tamper):
    with tamper() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [chain[0].pk])
    assert f"event {chain[1].pk}: the events before it are missing" in str(_broken())


@pytest.mark.django_db
def test_it_names_an_inserted_event_even_with_a_recomputed_hash(chain, tamper):
    # A forged event claiming to follow chain[1], with a hash computed by the book, lands after the tail.
    forged = AuditEvent(
        id=chain[-1].pk + 100,
        occurred_at=chain[1].occurred_at,
        event_type="auth.login",
        actor_name="ghost",
        prev_hash=chain[1].hash,
        chain_seq=chain[-1].chain_seq + 1,
    )
    forged.hash = compute_hash(forged, forged.prev_hash)
    with tamper() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (id, chain_seq, occurred_at, event_type, severity, outcome, actor_name,"
            " api_key_prefix, user_agent, resource_type, resource_id, action, details, request_id, trace_id,"
            " prev_hash, hash)"
            " VALUES (%s, %s, %s, 'auth.login', 'info', 'success', 'ghost', '', '', '', '', '', '{}', '', '', %s, %s)",
            [forged.id, forged.chain_seq, forged.occurred_at, forged.prev_hash, forged.hash],
        )
    assert f"event {forged.id}:" in str(_broken())


@pytest.mark.django_db
def test_it_names_an_event_whose_hash_was_replaced(chain, tamper):
    with tamper() as cursor:
        cursor.execute("UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["f" * 64, chain[3].pk])
    # chain[3] now fails its own hash; the walk stops there, not at chain[4].
    assert f"event {chain[3].pk}:" in str(_broken())


def _insert_beside(cursor, *, chain_seq, hash, prev_hash):
    cursor.execute(
        "INSERT INTO audit_auditevent (chain_seq, occurred_at, event_type, severity, outcome, actor_name,"
        " api_key_prefix, user_agent, resource_type, resource_id, action, details, request_id, trace_id,"
        " prev_hash, hash)"
        " VALUES (%s, %s, 'auth.login', 'info', 'success', 'ghost', '', '', '', '', '', '{}', '', '', %s, %s)",
        [chain_seq, timezone.now(), prev_hash, hash],
    )
    return AuditEvent.objects.get(actor_name="ghost")


@pytest.mark.django_db
@pytest.mark.parametrize("chain_seq", [0, -3])
def test_it_names_a_forged_event_placed_before_the_chain(chain, tamper, chain_seq):
    # Rows at position 0 or below were never read: a forged event there showed in the trail,
    # and audit_verify said OK. With a hash computed by the book and linked to genesis.
    forged = AuditEvent(occurred_at=timezone.now(), event_type="auth.login", actor_name="ghost")
    digest = compute_hash(forged, GENESIS_HASH)
    with tamper(constraints=False) as cursor:
        forged = _insert_beside(cursor, chain_seq=chain_seq, hash=digest, prev_hash=GENESIS_HASH)
    assert f"event {forged.pk}: it links to the genesis hash but its chain_seq is {chain_seq}" in str(_broken())


@pytest.mark.django_db
def test_it_names_a_row_with_a_hash_but_no_position(chain, tamper):
    with tamper(constraints=False) as cursor:
        forged = _insert_beside(cursor, chain_seq=None, hash="a" * 64, prev_hash=chain[-1].hash)
    error = str(_broken())
    assert f"event {forged.pk}: 1 row(s) outside the verified chain" in error


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_names_a_row_sharing_a_position_a_keyset_walk_would_skip(chain, tamper):
    # Position 2 ends the walk's first chunk (--chunk-size 2): whichever of the two rows there the
    # chunk holds, the other is never read by "chain_seq > 2". If the real one was read, only the
    # count of rows at or below the head shows the forged one; either way it is named.
    with tamper(constraints=False) as cursor:
        forged = _insert_beside(cursor, chain_seq=chain[1].chain_seq, hash="b" * 64, prev_hash=chain[0].hash)
    assert f"event {forged.pk}:" in str(_broken())
