"""Walking the hash chain: the check behind ``manage.py audit_verify`` and ``audit_purge``.

Rows are read in chain order (``chain_seq``), in keyset-paginated chunks of ``values()`` (no ORM
instances, no server-side cursor), so memory stays bounded whatever the table size. Every row of
the table is accounted for: a row is either in the one verified chain or still waiting to be
sealed; anything else (a ``chain_seq`` outside the chain, a duplicated one, a hash on an unsealed
row) is reported, so a row slipped in beside the chain cannot show in the trail unverified.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q

from audit.chain import CHAIN_VALUES, GENESIS_HASH, compute_hash
from audit.models import AuditEvent

DEFAULT_CHUNK_SIZE = 2000


@dataclass(frozen=True)
class VerifyResult:
    """What a walk found: ``ok``, how many events were checked, and the first broken one.

    ``start_seq`` and ``start_prev_hash`` say where the chain begins (``1`` and the genesis hash,
    or just after a purge); ``anchor`` is the ``details`` of the ``audit.purged`` event whose
    anchor the first event links to, when it links to one. ``head_*`` describe the newest event.
    """

    checked: int
    broken_id: int | None = None
    reason: str = ""
    head_id: int | None = None
    head_hash: str = ""
    head_seq: int | None = None
    start_seq: int | None = None
    start_prev_hash: str = ""
    anchor: dict[str, Any] | None = field(default=None, compare=False)
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
    """Every sealed event as a ``values()`` dict, in chain order, ``chunk_size`` rows per query.

    No lower bound: a row with ``chain_seq`` 0 or below is read (and fails) like any other.
    """
    base = AuditEvent.objects.filter(chain_seq__isnull=False).order_by("chain_seq").values("chain_seq", *CHAIN_VALUES)
    if stop_after_seq is not None:
        base = base.filter(chain_seq__lte=stop_after_seq)
    last_seq: int | None = None
    while True:
        page = base if last_seq is None else base.filter(chain_seq__gt=last_seq)
        rows = list(page[:chunk_size])
        yield from rows
        if len(rows) < chunk_size:
            return
        last_seq = rows[-1]["chain_seq"]


def verify_chain(
    *, chunk_size: int = DEFAULT_CHUNK_SIZE, stop_after_seq: int | None = None, seal: bool = True
) -> VerifyResult:
    """Check every link, every hash and every position, in chain order; stop at the first break.

    With ``seal`` (the default), committed events not yet sealed are sealed first (see
    ``audit.services.audit_seal``), so the walk covers everything committed. The first event must
    link to the genesis hash at position 1, or to the anchor an ``audit.purged`` event (itself in
    the chain) kept, right after the purged position. An edited event fails its own hash; a
    deleted event breaks the next event's link; an inserted event breaks its own link or the next
    one's; a row beside the chain (a position that is not the next one, a duplicated position, a
    hash on an unsealed row) is named too. Deleting events from the end cannot be seen from the
    table alone: signed checkpoints (``audit.checkpoints``) catch that.
    """
    if seal:
        from audit.services import audit_seal  # services imports this module

        audit_seal()
    previous: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    anchor: dict[str, Any] | None = None
    checked = 0
    for row in iter_chain(chunk_size=chunk_size, stop_after_seq=stop_after_seq):
        if previous is None:
            first = row
            anchor, problem = _check_start(row)
        elif row["prev_hash"] != previous["hash"]:
            problem = "its prev_hash does not match the previous event's hash"
        elif row["chain_seq"] != previous["chain_seq"] + 1:
            problem = (
                f"its chain_seq {row['chain_seq']} does not follow {previous['chain_seq']} (a row beside the chain)"
            )
        else:
            problem = ""
        if not problem and compute_hash(row, row["prev_hash"]) != row["hash"]:
            problem = "its content does not match its hash"
        if problem:
            return VerifyResult(checked, row["id"], problem)
        previous = row
        checked += 1
    head_seq = previous["chain_seq"] if previous else None
    outside_id, outside, unsealed = _rows_outside_chain(head_seq, checked)
    if outside:
        return VerifyResult(
            checked, outside_id, f"{outside} row(s) outside the verified chain (a duplicated chain_seq or a hash"
            " on an unsealed row)"
        )  # fmt: skip
    return VerifyResult(
        checked,
        head_id=previous["id"] if previous else None,
        head_hash=previous["hash"] if previous else "",
        head_seq=head_seq,
        start_seq=first["chain_seq"] if first else None,
        start_prev_hash=first["prev_hash"] if first else "",
        anchor=anchor,
        unsealed=unsealed,
    )


def _check_start(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The anchor the first event links to (or None for genesis), and what is wrong with it ("" if nothing)."""
    if row["prev_hash"] == GENESIS_HASH:
        if row["chain_seq"] != 1:
            return None, f"it links to the genesis hash but its chain_seq is {row['chain_seq']}, not 1"
        return None, ""
    # The purge event sits later in the same chain, so the walk checks its hash (and thus this
    # anchor) too: forging an anchor needs events deleted *and* the chain after them rewritten.
    # Only a sealed event counts; the count of rows outside the chain then proves it is in it.
    purge = (
        AuditEvent.objects.filter(
            event_type="audit.purged", chain_seq__gte=row["chain_seq"], details__last_purged_hash=row["prev_hash"]
        )
        .values("details")
        .first()
    )
    if purge is None:
        return None, "the events before it are missing (no genesis or purge anchor)"
    details = purge["details"]
    if details.get("last_purged_seq") != row["chain_seq"] - 1:
        return details, f"its chain_seq {row['chain_seq']} does not follow the purge anchor's"
    return details, ""


def _rows_outside_chain(head_seq: int | None, checked: int) -> tuple[int | None, int, int]:
    """``(an id, how many)`` of rows not in the walked chain, and how many rows await sealing.

    One aggregate: rows at or below the head must be exactly the ones walked (a duplicated
    ``chain_seq`` hides from a keyset walk), and an unsealed row carries no hash. Events sealed
    after the walk come after the head, so concurrent writers are never miscounted.
    """
    in_range = Q(chain_seq__lte=head_seq) if head_seq is not None else Q(chain_seq__isnull=False)
    counts = AuditEvent.objects.aggregate(
        in_range=Count("id", filter=in_range),
        stray=Count("id", filter=Q(chain_seq__isnull=True, hash__isnull=False)),
        unsealed=Count("id", filter=Q(chain_seq__isnull=True, hash__isnull=True)),
    )
    outside = counts["in_range"] - checked + counts["stray"]
    if not outside:
        return None, 0, counts["unsealed"]
    stray = AuditEvent.objects.filter(chain_seq__isnull=True, hash__isnull=False).order_by("id")
    duplicated = (
        AuditEvent.objects.filter(chain_seq__isnull=False).values("chain_seq").annotate(n=Count("id")).filter(n__gt=1)
    )
    suspect = stray.values_list("id", flat=True).first() or (
        AuditEvent.objects.filter(chain_seq__in=duplicated.values("chain_seq"))
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return suspect, outside, counts["unsealed"]
