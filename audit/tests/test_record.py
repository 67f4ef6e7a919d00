"""audit.record(): context from the request, the caller's transaction, the chain under concurrency."""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

import audit
from accounts.services import api_key_create
from audit.chain import GENESIS_HASH
from audit.models import AuditEvent
from audit.services import UnknownEventType, audit_seal
from audit.tests.factories import UserFactory
from audit.verification import verify_chain


def _denial() -> AuditEvent:
    return AuditEvent.objects.get(event_type="authz.permission.denied")


@pytest.mark.django_db
def test_it_fills_request_id_ip_user_agent_and_actor_from_the_request(client):
    user = UserFactory(username="mallory")
    client.force_login(user)
    r = client.get(
        "/api/v1/audit-events/",
        headers={"X-Request-ID": "req-123", "User-Agent": "curl/8.0", "X-Forwarded-For": "203.0.113.9"},
    )
    assert r.status_code == 403
    event = _denial()
    assert event.request_id == "req-123"
    assert event.user_agent == "curl/8.0"
    assert event.ip_address == "127.0.0.1"  # X-Forwarded-For ignored: no trusted proxy configured
    assert event.actor_id == user.pk
    assert event.actor_name == "mallory"
    assert event.outcome == "denied"
    assert event.details["permission"] == "audit:read"


@pytest.mark.django_db
def test_it_honours_x_forwarded_for_from_a_trusted_proxy(client, settings):
    settings.SYMPHONY_TRUSTED_PROXIES = ["127.0.0.0/8"]
    client.force_login(UserFactory())
    client.get("/api/v1/audit-events/", headers={"X-Forwarded-For": "198.51.100.7, 127.0.0.2"})
    assert _denial().ip_address == "198.51.100.7"


@pytest.mark.django_db
def test_it_records_the_api_key_prefix_never_the_secret(client):
    owner = UserFactory(codes=["agent:read"])
    key, raw = api_key_create(owner=owner, name="ci", scopes=["agent:read"])
    r = client.get("/api/v1/audit-events/", headers={"Authorization": f"Bearer {raw}"})
    assert r.status_code == 403
    event = _denial()
    assert event.api_key_prefix == key.prefix
    assert event.actor_name == owner.username
    secret = raw.rsplit("_", 1)[-1]
    assert not AuditEvent.objects.filter(details__icontains=secret).exists()


@pytest.mark.django_db
def test_it_leaves_request_fields_empty_outside_a_request():
    event = audit.record("system.started")
    audit_seal()
    event.refresh_from_db()
    assert (event.request_id, event.ip_address, event.user_agent, event.actor_id) == ("", None, "", None)
    assert event.severity == "info"
    assert event.prev_hash == GENESIS_HASH


@pytest.mark.django_db
def test_it_takes_resource_type_and_id_from_a_model_instance():
    user = UserFactory()
    event = audit.record("user.updated", resource=user, details={"fields": ["email"]})
    assert (event.resource_type, event.resource_id) == ("accounts.user", str(user.pk))


@pytest.mark.django_db
def test_it_refuses_unknown_types_outcomes_and_severities():
    with pytest.raises(UnknownEventType):
        audit.record("auth.logni")
    with pytest.raises(ValueError, match="outcome"):
        audit.record("auth.login", outcome="maybe")
    with pytest.raises(ValueError, match="severity"):
        audit.record("auth.login", severity="loud")
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_it_stores_values_as_the_database_gives_them_back_so_the_hash_holds():
    # PostgreSQL's inet canonicalises IPv6 and jsonb refuses NUL: both would break the hash or the write.
    audit.record("auth.failed", ip_address="2001:0db8:0000::0001", details={"username": "a\x00b", "n": [1, 2.5]})
    audit.record("auth.failed", ip_address="not-an-ip", actor=None)
    audit_seal()
    stored = AuditEvent.objects.order_by("id").first()
    assert stored.ip_address == "2001:db8::1"
    assert stored.details == {"username": "ab", "n": [1, 2.5]}
    assert verify_chain().ok


@pytest.mark.django_db
def test_it_links_each_event_to_the_previous_one(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = audit.record("system.started")
        second = audit.record("system.config.changed", details={"setting": "X"})
    audit.seal_now()  # on PostgreSQL the commit only woke the background sealer
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.chain_seq, second.chain_seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert verify_chain(seal=False).checked == 2


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_costs_the_writer_no_statement_after_the_commit_on_postgresql(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        event = audit.record("system.started")
    assert AuditEvent.objects.get(pk=event.pk).hash is None  # not chained inside the caller's transaction
    with CaptureQueriesContext(connection) as context:
        for callback in callbacks:
            callback()  # wakes the background sealer (which cannot see this test's transaction)
    assert context.captured_queries == []
    assert audit.seal_now() == 1
    assert AuditEvent.objects.get(pk=event.pk).hash is not None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_background_sealer_seals_a_committed_event_on_postgresql(audit_sealing):
    with transaction.atomic():
        event = audit.record("system.started")
    audit_sealing.wait()  # nobody seals here: the process's sealer thread does
    assert AuditEvent.objects.get(pk=event.pk).chain_seq == 1
    assert verify_chain(seal=False).ok


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_lets_only_the_sealer_touch_an_unsealed_row_on_postgresql():
    event = audit.record("system.started")  # unsealed: the test transaction never commits
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor_name="forged")
    assert audit_seal() == 1
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(hash="0" * 64)  # sealed now: no more updates


@pytest.mark.django_db
def test_it_keeps_events_and_chain_when_the_actor_is_deleted():
    user = UserFactory(username="leaver")
    audit.record("auth.login", actor=user)
    audit_seal()
    user.delete()  # with SET_NULL this UPDATE would be refused on PostgreSQL and break the hash
    event = AuditEvent.objects.get()
    assert event.actor_name == "leaver"
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_writes_inside_the_callers_transaction_on_postgresql(audit_sealing):
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record("role.created", details={"name": "doomed"})
        raise RuntimeError("the change fails")
    assert not AuditEvent.objects.exists()

    with transaction.atomic():
        audit.record("role.created", details={"name": "kept"})
    assert list(AuditEvent.objects.values_list("details__name", flat=True)) == ["kept"]
    audit_sealing.wait()
    result = verify_chain(seal=False)  # sealed in the background after the commit, not by verify
    assert result.ok and result.checked == 1 and result.unsealed == 0


@pytest.mark.django_db
def test_it_leaves_no_event_when_a_savepoint_rolls_back():
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record("role.deleted")
        raise RuntimeError
    assert not AuditEvent.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_keeps_the_chain_correct_under_concurrent_writers(audit_sealing):
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with transaction.atomic():
                    audit.record("task.claimed", resource_type="agents.task", resource_id=f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert AuditEvent.objects.count() == threads * per_thread
    audit_sealing.wait()
    result = verify_chain(chunk_size=17, seal=False)  # chunk boundaries inside the walk
    assert result.ok, result
    assert result.unsealed == 0  # the background sealer, not verify, sealed them
    assert result.checked == threads * per_thread
    assert connection.vendor == "postgresql"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("first_in_savepoint", [False, True])
def test_it_seals_once_per_transaction_and_survives_a_later_savepoint_rollback(first_in_savepoint, audit_sealing):
    """Several events of one transaction share one seal; a savepoint rolled back after the first
    event (which took over the seal from it) must not take the seal away from the first."""
    with transaction.atomic():
        if first_in_savepoint:
            with transaction.atomic():
                audit.record("role.created", details={"name": "kept"})
        else:
            audit.record("role.created", details={"name": "kept"})
        with pytest.raises(RuntimeError), transaction.atomic():
            audit.record("role.created", details={"name": "doomed"})
            raise RuntimeError
        audit.record("role.updated", details={"name": "kept too"})
        seals = [f for _, f, _ in connection.run_on_commit if f.__name__ == "_seal_after_commit"]
        assert len(seals) == 1
    assert sorted(AuditEvent.objects.values_list("details__name", flat=True)) == ["kept", "kept too"]
    audit_sealing.wait()
    result = verify_chain(seal=False)
    assert result.ok and result.checked == 2 and result.unsealed == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_keeps_the_seal_of_an_earlier_event_when_the_only_later_one_rolls_back(audit_sealing):
    with transaction.atomic():
        audit.record("role.created", details={"name": "kept"})
        with pytest.raises(RuntimeError), transaction.atomic():
            audit.record("role.created", details={"name": "doomed"})  # takes over the seal callback
            raise RuntimeError
    audit_sealing.wait()
    result = verify_chain(seal=False)
    assert result.ok and result.checked == 1 and result.unsealed == 0


@pytest.mark.django_db
def test_it_records_many_events_in_one_insert_chained_in_order(django_capture_on_commit_callbacks):
    user = UserFactory(username="claimer")
    rows = [
        {
            "actor": user if n != 2 else None,
            "resource_type": "agents.task",
            "resource_id": n,
            "details": {"n": n, "note": "déjà vu ✓", "nested": {"none": None, "list": [n, "x"]}},
            "ip_address": f"2001:db8::{n}" if n != 3 else "10.0.0.3",
            "api_key_prefix": f"prefix{n}",
            "action": f'say "{n}" \\ it\'s\n\t😀 {"x" * 70}',  # quoted, escaped, beyond the BMP, cut at 64
        }
        for n in range(1, 4)
    ]
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
        events = audit.record_many("task.claimed", rows)
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1, inserts
    audit.seal_now()
    stored = list(AuditEvent.objects.order_by("chain_seq"))
    assert [e.pk for e in stored] == [e.pk for e in events]
    assert [
        (e.resource_id, e.details, e.actor_name, e.actor_id, e.ip_address, e.api_key_prefix, e.action) for e in stored
    ] == [
        (
            str(n),
            row["details"],
            "" if n == 2 else "claimer",
            None if n == 2 else user.pk,
            row["ip_address"],
            f"prefix{n}",
            row["action"][:64],
        )
        for n, row in enumerate(rows, start=1)
    ]
    assert all(e.occurred_at == s.occurred_at for e, s in zip(events, stored, strict=True))
    assert stored[1].prev_hash == stored[0].hash and stored[2].prev_hash == stored[1].hash
    assert verify_chain(seal=False).checked == 3


@pytest.mark.django_db
def test_it_records_none_of_many_when_one_is_invalid():
    with pytest.raises(ValueError, match="outcome"):
        audit.record_many("task.claimed", [{"resource_id": 1}, {"resource_id": 2, "outcome": "bogus"}])
    with pytest.raises(UnknownEventType):
        audit.record_many("task.nonsense", [{"resource_id": 1}])
    assert not AuditEvent.objects.exists()
