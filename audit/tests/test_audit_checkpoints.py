"""Signed checkpoints: what a database superuser (or the table's owner) can still do to the trail
undetected by the chain alone, and how the checkpoints outside the database catch it (SQLite and
PostgreSQL). ``tamper`` edits the table the way such a role can: triggers off, constraints dropped.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import connection

import audit
from audit.chain import CHAIN_VALUES, compute_hash
from audit.models import AuditEvent
from audit.services import audit_seal

pytestmark = pytest.mark.django_db


def _write_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    return key


@pytest.fixture
def signing_key(settings, tmp_path) -> Ed25519PrivateKey:
    key = _write_key(tmp_path / "audit-signing-key.pem")
    settings.SYMPHONY_AUDIT_SIGNING_KEY_FILE = str(tmp_path / "audit-signing-key.pem")
    settings.SYMPHONY_AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    settings.SYMPHONY_AUDIT_CHECKPOINT_EVERY = 0
    return key


@pytest.fixture
def folder(signing_key, tmp_path) -> Path:
    return tmp_path / "checkpoints"


def _run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _failure(*args: str) -> str:
    with pytest.raises(CommandError) as info:
        _run("audit_verify", *args)
    assert info.value.returncode == 1
    return str(info.value)


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint-*.json"))


@pytest.fixture
def checkpointed(folder, event_factory):
    """Five events, checkpointed after the third and after the fifth."""
    events = [event_factory() for _ in range(3)]
    _run("audit_checkpoint")
    events += [event_factory() for _ in range(2)]
    _run("audit_checkpoint")
    return events


def test_it_writes_signed_checkpoints_each_naming_the_previous_one(checkpointed, folder, signing_key):
    first, second = _files(folder)
    one, two = json.loads(first.read_bytes()), json.loads(second.read_bytes())
    assert one["checkpoint"]["number"] == 1 and one["checkpoint"]["previous"] is None
    assert two["checkpoint"]["previous"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert (two["checkpoint"]["seq"], two["checkpoint"]["hash"]) == (checkpointed[-1].chain_seq, checkpointed[-1].hash)
    assert two["checkpoint"]["start_seq"] == 1
    # Anyone with the public key can check a checkpoint: Ed25519 over the canonical JSON.
    signed = json.dumps(two["checkpoint"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    signing_key.public_key().verify(base64.b64decode(two["signature"]), signed)

    assert "up to date" in _run("audit_checkpoint")
    out = _run("audit_verify")
    assert "audit chain OK: 5 events verified" in out
    assert "matches 2 signed checkpoint(s)" in out and "(newest: 2, position 5)" in out


def test_it_detects_a_truncated_table(checkpointed):
    # The trigger lets a superuser TRUNCATE (it could switch the trigger off anyway); on SQLite
    # anyone holding the file can empty the table.
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE audit_auditevent" if connection.vendor == "postgresql" else "DELETE FROM audit_auditevent"
        )
    assert "audit chain OK: no events" in _run("audit_verify", "--no-checkpoints")  # the chain alone
    assert "the audit table has no events, but checkpoint-0000000002.json signed the chain up to position 5" in (
        _failure()
    )


def test_it_detects_deleted_newest_events(checkpointed, tamper):
    with tamper() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE chain_seq >= 4")
    assert "audit chain OK: 3 events verified" in _run("audit_verify", "--no-checkpoints")
    assert "the newest 2 event(s) are missing: checkpoint-0000000002.json signed the chain up to position 5" in (
        _failure()
    )
    with pytest.raises(CommandError, match=r"no longer matches checkpoint-0000000002\.json at position 5"):
        _run("audit_checkpoint")  # never signs over the cut


def test_it_detects_a_chain_rewritten_with_recomputed_hashes(checkpointed, tamper):
    with tamper() as cursor:
        rows = list(
            AuditEvent.objects.filter(chain_seq__gte=2).order_by("chain_seq").values("chain_seq", *CHAIN_VALUES)
        )
        previous = AuditEvent.objects.get(chain_seq=1).hash
        rows[0]["action"] = "nothing to see"
        for row in rows:
            row["prev_hash"], row["hash"] = previous, compute_hash(row, previous)
            previous = row["hash"]
            cursor.execute(
                "UPDATE audit_auditevent SET action = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [row["action"], row["prev_hash"], row["hash"], row["id"]],
            )
    assert "audit chain OK: 5 events verified" in _run("audit_verify", "--no-checkpoints")
    error = _failure()
    assert f"event {checkpointed[2].pk} at position 3 does not match checkpoint-0000000001.json" in error


@pytest.mark.parametrize("removed", [1, 2])
def test_it_detects_a_removed_checkpoint(checkpointed, folder, event_factory, removed):
    event_factory()
    _run("audit_checkpoint")
    _files(folder)[removed - 1].unlink()
    error = _failure()
    assert f"checkpoint {removed} is missing (removed from the folder)" in error


def test_it_detects_an_edited_or_foreign_checkpoint(checkpointed, folder, tmp_path):
    first, second = _files(folder)
    document = json.loads(second.read_bytes())
    document["checkpoint"]["seq"] = 3  # claim less was there
    second.write_text(json.dumps(document))
    error = _failure()
    assert "checkpoint-0000000002.json: its signature does not verify with a trusted key" in error

    # Signed by a key the verifier does not trust: the same.
    thief = _write_key(tmp_path / "thief.pem")
    payload = json.loads(first.read_bytes())["checkpoint"]
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    first.write_text(json.dumps({"checkpoint": payload, "signature": base64.b64encode(thief.sign(canonical)).decode()}))
    assert "checkpoint-0000000001.json: its signature does not verify" in _failure()


@pytest.mark.parametrize("signed_by", [None, "thief"])
def test_it_detects_oldest_events_deleted_behind_a_forged_purge_anchor(checkpointed, tamper, tmp_path, signed_by):
    from audit import checkpoints

    third = checkpointed[2]
    with tamper() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE chain_seq <= 3")
    details = {"count": 3, "before": "2026-01-01T00:00:00+00:00", "last_purged_id": third.pk}
    details |= {"last_purged_seq": third.chain_seq, "last_purged_hash": third.hash}
    if signed_by:
        details = checkpoints.sign_anchor(details, _write_key(tmp_path / "thief.pem"))
    audit.record("audit.purged", details=details)  # an INSERT the application's role may do
    audit_seal()
    assert "audit chain OK: 3 events verified" in _run("audit_verify", "--no-checkpoints")
    error = _failure()
    assert "the chain starts at position 4 after a purge anchor that is not signed by a trusted key" in error


def test_a_purge_signs_its_anchor_and_checkpoints_the_new_start(
    folder, event_factory, django_capture_on_commit_callbacks
):
    with time_machine.travel(dt.datetime(2026, 1, 10, tzinfo=dt.UTC), tick=False):
        old = [event_factory() for _ in range(3)]
    _run("audit_checkpoint")
    event_factory()
    _run("audit_checkpoint")
    with django_capture_on_commit_callbacks(execute=True):
        assert "purged 3 audit events" in _run("audit_purge", "--before", "2026-03-01")
    purged = AuditEvent.objects.get(event_type="audit.purged")
    assert purged.details["last_purged_hash"] == old[-1].hash and purged.details["signature"]
    newest = json.loads(_files(folder)[-1].read_bytes())["checkpoint"]
    assert (newest["number"], newest["start_seq"], newest["seq"]) == (3, 4, purged.chain_seq)
    out = _run("audit_verify")  # checkpoint 1 now lies in the purged range: fine, the purge is signed
    assert "audit chain OK: 2 events verified" in out and "matches 3 signed checkpoint(s)" in out


def test_a_superuser_can_still_cut_events_newer_than_the_last_checkpoint(checkpointed, event_factory, tamper):
    # The limit of any checkpoint scheme (CloudTrail's too): what came after the newest checkpoint
    # is only protected by the next one. Automatic checkpoints bound that window to N events.
    event_factory()
    with tamper() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE chain_seq = 6")
    assert "matches 2 signed checkpoint(s)" in _run("audit_verify")


def test_it_writes_a_checkpoint_after_every_n_events(folder, settings, django_capture_on_commit_callbacks):
    settings.SYMPHONY_AUDIT_CHECKPOINT_EVERY = 3
    for n in range(8):
        with django_capture_on_commit_callbacks(execute=True):
            audit.record("resource.updated", resource_type="agents.agent", resource_id=str(n))
            audit.seal_now()  # what the background sealer does: seal, then checkpoint when due
    seqs = [json.loads(path.read_bytes())["checkpoint"]["seq"] for path in _files(folder)]
    assert seqs == [1, 4, 7]  # the first as soon as there is a chain, then every 3
    assert "matches 3 signed checkpoint(s)" in _run("audit_verify")


def test_it_notices_when_checkpoints_stop_although_they_are_due(folder, settings, event_factory):
    settings.SYMPHONY_AUDIT_CHECKPOINT_EVERY = 2
    for _ in range(5):
        event_factory()  # sealed directly: no automatic checkpoint
    assert "no checkpoint covers the newest 5 events although one is written every 2" in _failure()
    assert "audit chain OK" in _run("audit_verify", "--every", "0")


def test_a_failing_automatic_checkpoint_never_fails_the_audited_action(
    signing_key, settings, tmp_path, django_capture_on_commit_callbacks
):
    (tmp_path / "not-a-folder").write_text("")
    settings.SYMPHONY_AUDIT_CHECKPOINT_DIR = str(tmp_path / "not-a-folder")
    settings.SYMPHONY_AUDIT_CHECKPOINT_EVERY = 1
    with django_capture_on_commit_callbacks(execute=True):
        audit.record("auth.login")
        audit.seal_now()
    assert AuditEvent.objects.get().hash  # recorded and sealed
    with pytest.raises(CommandError, match="not-a-folder"):
        _run("audit_checkpoint")


def test_it_verifies_elsewhere_with_the_public_key_alone(checkpointed, folder, signing_key, settings, tmp_path):
    public = tmp_path / "audit-public-key.pem"
    public.write_bytes(
        signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings.SYMPHONY_AUDIT_SIGNING_KEY_FILE = settings.SYMPHONY_AUDIT_CHECKPOINT_DIR = ""
    with pytest.raises(CommandError, match="no key to check"):
        _run("audit_verify", "--checkpoint-dir", str(folder))
    out = _run("audit_verify", "--checkpoint-dir", str(folder), "--public-key", str(public))
    assert "matches 2 signed checkpoint(s)" in out
    with pytest.raises(CommandError, match="--public-key"):
        _run("audit_verify", "--checkpoint-dir", str(folder), "--public-key", str(tmp_path / "missing.pem"))


def test_it_trusts_an_unsigned_anchor_the_first_checkpoint_found(settings, tmp_path, event_factory):
    # A purge made before checkpoints (and signing) were set up: the first checkpoint records the
    # chain's start as it found it, and from then on that start is the trusted one.
    with time_machine.travel(dt.datetime(2026, 1, 10, tzinfo=dt.UTC), tick=False):
        event_factory(), event_factory()
    event_factory()
    _run("audit_purge", "--before", "2026-03-01")
    assert "signature" not in AuditEvent.objects.get(event_type="audit.purged").details
    _write_key(tmp_path / "key.pem")
    settings.SYMPHONY_AUDIT_SIGNING_KEY_FILE = str(tmp_path / "key.pem")
    settings.SYMPHONY_AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    _run("audit_checkpoint")
    assert "matches 1 signed checkpoint(s)" in _run("audit_verify")


def test_it_writes_checkpoints_on_a_file_system_without_hard_links(folder, event_factory, monkeypatch):
    import errno
    import os

    def no_links(source, target):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    event_factory()
    _run("audit_checkpoint")
    event_factory()
    _run("audit_checkpoint")
    assert len(_files(folder)) == 2
    assert sorted(path.name for path in folder.iterdir()) == [path.name for path in _files(folder)]  # no scratch left
    assert "matches 2 signed checkpoint(s)" in _run("audit_verify")
