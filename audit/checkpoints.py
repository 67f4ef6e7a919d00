"""Signed checkpoints of the hash chain, kept outside the database.

The chain alone cannot show events cut off its end, a truncated table, or a chain rewritten by
someone who recomputed every hash after an edit: it has no secret. A checkpoint pins the chain's
head at a moment with a signature made by a key the database does not hold, as AWS CloudTrail's
digest files and Certificate Transparency's signed tree heads do. ``audit_verify`` then checks
the table against every checkpoint in the folder.

A checkpoint is one JSON file, ``checkpoint-0000000042.json`` in ``SYMPHONY_AUDIT_CHECKPOINT_DIR``::

    {"checkpoint": {"format": "symphony-audit-checkpoint/1", "number": 42,
                    "previous": "<SHA-256 of the bytes of checkpoint 41's file>",
                    "seq": 84000, "hash": "<hash of the event at that position>", "event_id": 84017,
                    "start_seq": 1, "start_prev_hash": "<genesis, or the purge anchor the chain starts from>",
                    "created_at": "2026-12-01T21:00:00.000000+00:00", "key_id": "<16 hex digits>"},
     "signature": "<base64 Ed25519 signature of the canonical JSON of the checkpoint object>"}

Canonical JSON: keys sorted, no spaces, UTF-8. ``previous`` chains the files, so removing one is
seen at the next; numbers run from 1 without gaps. The anchors of purges are signed with the same
key (``sign_anchor``), so a purge anchor written without the key (events deleted by hand, then an
``audit.purged`` event forged to explain it) is refused.

This module reads and writes files and checks a chain walk (``audit.verification.VerifyResult``)
against them; ``audit.services.audit_checkpoint`` decides when to write one.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audit.chain import GENESIS_HASH

FORMAT = "symphony-audit-checkpoint/1"
_FILE_NAME = re.compile(r"checkpoint-(\d{10})\.json")
#: The fields of an ``audit.purged`` event's details that its signature covers.
ANCHOR_FIELDS = ("before", "count", "last_purged_hash", "last_purged_id", "last_purged_seq")


class CheckpointError(Exception):
    """A checkpoint cannot be written: the folder or the key is unusable, or the chain no longer
    matches the newest checkpoint (tampering: signing on would hide it)."""


@dataclass(frozen=True)
class Checkpoint:
    number: int
    previous: str | None
    seq: int
    hash: str
    event_id: int
    start_seq: int
    start_prev_hash: str
    created_at: str
    key_id: str
    name: str  # the file's name
    digest: str  # SHA-256 of the file's bytes: what the next checkpoint's ``previous`` names

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, name: str, digest: str) -> Checkpoint:
        return cls(
            number=int(payload["number"]),
            previous=payload["previous"],
            seq=int(payload["seq"]),
            hash=str(payload["hash"]),
            event_id=int(payload["event_id"]),
            start_seq=int(payload["start_seq"]),
            start_prev_hash=str(payload["start_prev_hash"]),
            created_at=str(payload["created_at"]),
            key_id=str(payload["key_id"]),
            name=name,
            digest=digest,
        )


# --- Keys and signatures ------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def load_private_key(path: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file at ``path``; ``ImproperlyConfigured`` naming it otherwise."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"SYMPHONY_AUDIT_SIGNING_KEY_FILE: cannot load {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"SYMPHONY_AUDIT_SIGNING_KEY_FILE: {path} is not an Ed25519 private key")
    return key


def load_public_key(path: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file holding either the public or the private key."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        key = private.public_key() if isinstance(private, Ed25519PrivateKey) else None
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of SHA-256 over its raw 32 bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signing_key() -> Ed25519PrivateKey | None:
    """The configured signing key (``SYMPHONY_AUDIT_SIGNING_KEY_FILE``), or None when there is none."""
    path = settings.SYMPHONY_AUDIT_SIGNING_KEY_FILE
    return load_private_key(path) if path else None


def trusted_keys(extra: Iterable[str] = ()) -> dict[str, Ed25519PublicKey]:
    """Public keys signatures are checked against: the signing key's, plus PEM files in ``extra``."""
    keys = [key.public_key()] if (key := signing_key()) is not None else []
    keys += [load_public_key(path) for path in extra]
    return {key_id(key): key for key in keys}


def canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sign(payload: Mapping[str, Any], key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.sign(canonical(payload))).decode()


def _signature_valid(payload: Mapping[str, Any], signature: Any, key: Ed25519PublicKey | None) -> bool:
    if key is None or not isinstance(signature, str):
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical(payload))
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_anchor(details: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``details`` of an ``audit.purged`` event plus ``key_id`` and a signature over its anchor fields."""
    signed = {name: details[name] for name in ANCHOR_FIELDS}
    return {**details, "key_id": key_id(key.public_key()), "signature": _sign(signed, key)}


def anchor_signed(details: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> bool:
    """Whether an ``audit.purged`` event's anchor carries a valid signature by one of ``keys``."""
    try:
        signed = {name: details[name] for name in ANCHOR_FIELDS}
    except KeyError:
        return False
    return _signature_valid(signed, details.get("signature"), keys.get(str(details.get("key_id"))))


# --- The folder -----------------------------------------------------------------------------------


def configured_folder() -> Path | None:
    """``SYMPHONY_AUDIT_CHECKPOINT_DIR``, or None when checkpoints are off."""
    folder = settings.SYMPHONY_AUDIT_CHECKPOINT_DIR
    return Path(folder) if folder else None


def _file_name(number: int) -> str:
    return f"checkpoint-{number:010d}.json"


def _numbered_files(folder: Path) -> list[tuple[int, str]]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted((int(match[1]), name) for name in names if (match := _FILE_NAME.fullmatch(name)))


def _parse(folder: Path, name: str) -> tuple[dict[str, Any], str, str]:
    """``(payload, signature, digest)`` of one file; ``ValueError`` when it is not a checkpoint."""
    data = (folder / name).read_bytes()
    try:
        document = json.loads(data)
        payload, signature = document["checkpoint"], document["signature"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("not a checkpoint file (unreadable JSON)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} checkpoint")
    return payload, signature, hashlib.sha256(data).hexdigest()


def newest(folder: Path) -> Checkpoint | None:
    """The highest-numbered checkpoint in ``folder`` (read, not verified), or None if there is none."""
    files = _numbered_files(folder)
    if not files:
        return None
    number, name = files[-1]
    try:
        payload, _, digest = _parse(folder, name)
        checkpoint = Checkpoint.from_payload(payload, name=name, digest=digest)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder / name}: {exc}") from None
    if checkpoint.number != number:
        raise CheckpointError(f"{folder / name}: it says it is checkpoint {checkpoint.number}")
    return checkpoint


def write(
    folder: Path,
    *,
    key: Ed25519PrivateKey,
    previous: Checkpoint | None,
    head: Mapping[str, Any],
    start: Mapping[str, Any],
) -> Checkpoint:
    """Write the checkpoint after ``previous`` for ``head`` (``id``, ``chain_seq``, ``hash`` of the
    newest event) and ``start`` (``chain_seq`` and ``prev_hash`` of the oldest).

    The file appears whole or not at all (written aside, flushed to disk, then linked to its
    name), and never replaces an existing checkpoint: two writers racing for one number cannot
    both succeed (``FileExistsError``).
    """
    payload = {
        "format": FORMAT,
        "number": previous.number + 1 if previous else 1,
        "previous": previous.digest if previous else None,
        "seq": head["chain_seq"],
        "hash": head["hash"],
        "event_id": head["id"],
        "start_seq": start["chain_seq"],
        "start_prev_hash": start["prev_hash"],
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "key_id": key_id(key.public_key()),
    }
    data = json.dumps({"checkpoint": payload, "signature": _sign(payload, key)}, indent=1, sort_keys=True).encode()
    folder.mkdir(parents=True, exist_ok=True)
    name = _file_name(payload["number"])
    scratch = folder / f".{name}.{os.getpid()}.tmp"
    try:
        with open(scratch, "wb") as stream:
            stream.write(data + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        _link(scratch, folder / name)
    finally:
        scratch.unlink(missing_ok=True)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return Checkpoint.from_payload(payload, name=name, digest=hashlib.sha256(data + b"\n").hexdigest())


def _link(source: Path, target: Path) -> None:
    """Give ``source`` the name ``target``, failing if ``target`` exists (``FileExistsError``).

    A hard link does both at once. On file systems without hard links (SMB shares, some object
    stores), a rename after an existence check: the caller holds the writers' lock, so nothing of
    Symphony's can slip in between.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        if target.exists():
            raise FileExistsError(target) from None
        os.replace(source, target)


# --- Verification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderReport:
    """The checkpoints of a folder whose signatures verify, by number, and what is wrong with the rest."""

    checkpoints: list[Checkpoint]
    problems: list[str]
    count: int  # checkpoint files found, valid or not


def read_folder(folder: Path, keys: Mapping[str, Ed25519PublicKey]) -> FolderReport:
    """Every checkpoint file in ``folder``: signatures checked, numbering and ``previous`` links too."""
    problems: list[str] = []
    valid: dict[int, Checkpoint] = {}
    files = _numbered_files(folder)
    for number, name in files:
        try:
            payload, signature, digest = _parse(folder, name)
            checkpoint = Checkpoint.from_payload(payload, name=name, digest=digest)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        if checkpoint.number != number:
            problems.append(f"{name}: it says it is checkpoint {checkpoint.number} (renamed?)")
        elif not _signature_valid(payload, signature, keys.get(checkpoint.key_id)):
            problems.append(
                f"{name}: its signature does not verify with a trusted key (key {checkpoint.key_id}): forged or edited"
            )
        else:
            valid[number] = checkpoint
    present = {number for number, _ in files}
    missing = [number for number in range(1, max(present, default=0) + 1) if number not in present]
    for first, last in _runs(missing):
        problems.append(
            f"checkpoint {first} is missing (removed from the folder)"
            if first == last
            else f"checkpoints {first} to {last} are missing (removed from the folder)"
        )
    for number, checkpoint in sorted(valid.items()):
        before = valid.get(number - 1)
        if number == 1 and checkpoint.previous is not None:
            problems.append(f"{checkpoint.name}: checkpoint 1 names a predecessor (earlier ones removed?)")
        elif before is not None and checkpoint.previous != before.digest:
            problems.append(f"{checkpoint.name}: it does not name {before.name} as its predecessor (replaced?)")
        elif before is not None and (checkpoint.seq < before.seq or checkpoint.start_seq < before.start_seq):
            problems.append(f"{checkpoint.name}: it goes back from {before.name} (seq {before.seq})")
    return FolderReport([valid[number] for number in sorted(valid)], problems, len(files))


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and runs[-1][1] == number - 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


def check_chain(result: Any, report: FolderReport, *, keys: Mapping[str, Ed25519PublicKey], every: int) -> list[str]:
    """What the chain (an intact ``VerifyResult``) lacks compared with the checkpoints: each problem named.

    - An empty table while a checkpoint signed events: truncated.
    - A checkpoint past the chain's head: the newest events were deleted.
    - A checkpoint whose position holds another hash: the chain was rewritten.
    - A chain starting after a purge anchor nobody signed: events removed by hand, anchor forged.
    - With automatic checkpoints every ``every`` events, a head two intervals past the newest
      checkpoint: the newest checkpoints were removed, or writing them fails.
    """
    from audit.models import AuditEvent  # models import the app registry; keep this module importable early

    problems: list[str] = []
    checkpoints = report.checkpoints
    last = checkpoints[-1] if checkpoints else None
    if result.head_seq is None:
        if last is not None:
            problems.append(
                f"the audit table has no events, but {last.name} signed the chain up to position {last.seq}"
                f" (event {last.event_id}): the table was truncated or emptied"
            )
        return problems
    if last is not None and last.seq > result.head_seq:
        problems.append(
            f"the newest {last.seq - result.head_seq} event(s) are missing: {last.name} signed the chain up to"
            f" position {last.seq} (event {last.event_id}), but it ends at position {result.head_seq}"
            f" (event {result.head_id})"
        )
    covered = [cp for cp in checkpoints if result.start_seq <= cp.seq <= result.head_seq]
    stored: dict[int, tuple[int, str]] = {}
    for offset in range(0, len(covered), 1000):
        seqs = [cp.seq for cp in covered[offset : offset + 1000]]
        for seq, pk, digest in AuditEvent.objects.filter(chain_seq__in=seqs).values_list("chain_seq", "id", "hash"):
            stored[seq] = (pk, digest)
    for cp in covered:
        pk, digest = stored.get(cp.seq, (None, None))
        if digest != cp.hash:
            problems.append(
                f"event {pk} at position {cp.seq} does not match {cp.name}: the chain was rewritten up to there"
            )
            break  # one rewrite shows at every later checkpoint: name the first
    if result.start_prev_hash != GENESIS_HASH:
        first = checkpoints[0] if checkpoints else None
        trusted_before = first is not None and (first.start_seq, first.start_prev_hash) == (
            result.start_seq,
            result.start_prev_hash,
        )
        if not trusted_before and not anchor_signed(result.anchor or {}, keys):
            problems.append(
                f"the chain starts at position {result.start_seq} after a purge anchor that is not signed by a"
                " trusted key: the events before it were removed without audit_purge (a forged anchor)"
            )
    newest_seq = last.seq if last is not None else result.start_seq - 1
    if every and result.head_seq - newest_seq >= 2 * every:
        problems.append(
            f"no checkpoint covers the newest {result.head_seq - newest_seq} events although one is written every"
            f" {every}: the newest checkpoints were removed, or writing them fails (see the logs)"
        )
    return problems
