"""Walking the hash chain: the check behind ``manage.py audit_verify`` and ``audit_purge``.

Rows are read in chain order (``chain_seq``), in keyset-paginated chunks of ``values()`` (no ORM
instances, no server-side cursor), so memory stays bounded whatever the table size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from audit.chain import CHAIN_VALUES, GENESIS_HASH, compute_hash
from audit.models import AuditEvent

DEFAULT_CHUNK_SIZE = 2000


@dataclass(frozen=True)
class VerifyResult:
    """What a walk found: ``ok``, how many events were checked, and the first broken one."""

    checked: int
    broken_id: int | None = None
    reason: str = ""
    head_id: int | None = None
    head_hash: str = ""
    unsealed: int = 0

    @property
    def ok(self) -> bool:
        return self.broken_id is None


class ChainBroken(Exception):
    """Raised by services that refuse to act on a broken chain; carries the ``VerifyResult``."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(f"audit chain broken at event {result.broken_id}: {result.reason}")
        self.result = result


def iter_chain(*, chunk_size: int = DEFAULT_CHUNK_SIZE, stop_after_seq: int | None = None) -> Iterator[dict[str, Any]]:
    """Every sealed event as a ``values()`` dict, in chain order, ``chunk_size`` rows per query."""
    last_seq = 0
    base = AuditEvent.objects.filter(chain_seq__isnull=False).order_by("chain_seq").values("chain_seq", *CHAIN_VALUES)
    if stop_after_seq is not None:
        base = base.filter(chain_seq__lte=stop_after_seq)
    while True:
        rows = list(base.filter(chain_seq__gt=last_seq)[:chunk_size])
        yield from rows
        if len(rows) < chunk_size:
            return
        last_seq = rows[-1]["chain_seq"]


def verify_chain(
    *, chunk_size: int = DEFAULT_CHUNK_SIZE, stop_after_seq: int | None = None, seal: bool = True
) -> VerifyResult:
    """Check every link and every hash, in chain order; stop at the first event that breaks.

    With ``seal`` (the default), committed events not yet sealed are sealed first (see
    ``audit.services.audit_seal``), so the walk covers everything committed. The first event must
    link to the genesis hash, or to the anchor an ``audit.purged`` event kept (the hash of the last
    event it purged). An edited event fails its own hash; a deleted event breaks the next event's
    link; an inserted event breaks its own link or the next one's. Deleting events from the end
    cannot be seen from the table alone: compare ``head_hash`` with one kept elsewhere
    (``audit_verify`` prints it).
    """
    if seal:
        from audit.services import audit_seal  # services imports this module

        audit_seal()
    expected: str | None = None
    checked = 0
    row: dict[str, Any] | None = None
    for row in iter_chain(chunk_size=chunk_size, stop_after_seq=stop_after_seq):
        if expected is None and not _is_valid_head(row["prev_hash"]):
            return VerifyResult(checked, row["id"], "the events before it are missing (no genesis or purge anchor)")
        if expected is not None and row["prev_hash"] != expected:
            return VerifyResult(checked, row["id"], "its prev_hash does not match the previous event's hash")
        if compute_hash(row, row["prev_hash"]) != row["hash"]:
            return VerifyResult(checked, row["id"], "its content does not match its hash")
        expected = row["hash"]
        checked += 1
    unsealed = AuditEvent.objects.filter(chain_seq__isnull=True).count()
    return VerifyResult(checked, head_id=row["id"] if row else None, head_hash=expected or "", unsealed=unsealed)


def _is_valid_head(prev_hash: str) -> bool:
    if prev_hash == GENESIS_HASH:
        return True
    # The purge event sits later in the same chain, so the walk checks its hash (and thus this
    # anchor) too: an attacker cannot forge an anchor without breaking the chain further on.
    return AuditEvent.objects.filter(event_type="audit.purged", details__last_purged_hash=prev_hash).exists()
