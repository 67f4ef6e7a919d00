"""Writing to the audit trail: ``record()`` (the one way in), ``audit_seal()`` (linking events into the
hash chain after their commit), ``audit_checkpoint()`` (signed checkpoints of the chain, outside the
database), ``audit_purge()`` (retention) and ``audit_export_start()``."""

from __future__ import annotations

import atexit
import datetime as dt
import ipaddress
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, connections, models, transaction
from django.db.models import Subquery
from django.utils import timezone

from audit import checkpoints
from audit.chain import CHAIN_VALUES, GENESIS_HASH, compute_hash
from audit.checkpoints import Checkpoint, CheckpointError
from audit.events import EVENT_TYPES, SEVERITIES
from audit.export import FORMATS
from audit.models import AuditEvent
from audit.verification import ChainBroken, verify_chain
from observability import context, metrics

log = structlog.get_logger(__name__)

# Any constants work: they name the advisory locks that serialise sealers (and purges), and
# checkpoint writers.
_CHAIN_LOCK_ID = 0x53594D41  # "SYMA"
_CHECKPOINT_LOCK_ID = 0x53594D43  # "SYMC"
_MAX_DETAILS_BYTES = 64 * 1024
_OUTCOMES = frozenset(AuditEvent.Outcome.values)
# Waiting to be sealed: no position *and* no hash. A row with a hash but no position was not written
# by record(); sealing over it would hide it, so it is left for audit_verify to name.
_PENDING = models.Q(chain_seq__isnull=True, hash__isnull=True)
# The sealer's batch window and idle poll are settings (SYMPHONY_AUDIT_SEAL_*, read at each use).
#: When a seal could not take the chain lock, look again this much later (the holder re-checks
#: after releasing it; this also covers a holder whose transaction rolled back, or that died).
SEAL_RETRY = 0.5


class UnknownEventType(ValueError):
    """Raised by ``record()`` for an event type missing from ``audit.events.EVENT_TYPES``."""


class PurgeNotPermitted(PermissionError):
    """Raised by ``audit_purge()`` when the database role may not delete audit events."""


#: Per process, by the value of SYMPHONY_AUDIT_CHECKPOINT_DIR: the position of the newest checkpoint
#: known to exist. Only an optimisation (a stale value costs one look at the folder), so it need not
#: be shared between processes.
_known_checkpoint_seq: dict[str, int] = {}


def record(
    event_type: str,
    *,
    actor: Any = None,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    severity: str | None = None,
    resource: models.Model | None = None,
    resource_type: str = "",
    resource_id: str | int = "",
    action: str = "",
    details: dict[str, Any] | None = None,
    api_key_prefix: str | None = None,
    ip_address: str | None = None,
    project: Any = None,
) -> AuditEvent:
    """Append an event to the audit trail, inside the caller's transaction.

    A rolled-back change therefore leaves no event, and a committed change always has one. Request
    id, IP, user agent, actor and API-key prefix are filled from the current request when there is
    one and they were not given. ``resource`` (a model instance) fills ``resource_type`` and
    ``resource_id``. ``project`` (a slug, or anything with a ``slug``) names the project the event
    belongs to; when not given it is taken from ``resource`` if that belongs to a project (has a
    ``project`` relation) or is one (an ``accounts.project``). Raises ``UnknownEventType`` for a
    type not in the catalog and ``ValueError``
    for an unknown outcome or severity.

    The event is linked into the hash chain on PostgreSQL by this process's background sealer,
    woken when the caller's transaction commits and sealing every pending event in batches (at
    most every ``SYMPHONY_AUDIT_SEAL_INTERVAL`` seconds; nothing in the caller's transaction or its commit waits
    for the chain), on SQLite at once (its write transactions are serialised anyway). Until sealed,
    its ``hash`` is None; the PostgreSQL trigger still refuses any change to its content.
    ``seal_now()`` seals what is pending and returns when it is done.
    """
    event = _build(
        event_type,
        actor=actor,
        outcome=outcome,
        severity=severity,
        resource=resource,
        resource_type=resource_type,
        resource_id=resource_id,
        action=action,
        details=details,
        api_key_prefix=api_key_prefix,
        ip_address=ip_address,
        project=project,
    )
    _store([event])
    return event


def record_many(event_type: str, events: list[dict[str, Any]]) -> list[AuditEvent]:
    """``record(event_type, **kwargs)`` for each of ``events``, in one INSERT; return the events.

    The same rules and the same request context as ``record()`` (all of them are checked before
    anything is written), inside the caller's transaction; the events are sealed in this order.
    For a service that audits many rows of one change (a claim of many tasks).
    """
    built = [_build(event_type, **kwargs) for kwargs in events]
    if built:
        _store(built)
    return built


def _build(
    event_type: str,
    *,
    actor: Any = None,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    severity: str | None = None,
    resource: models.Model | None = None,
    resource_type: str = "",
    resource_id: str | int = "",
    action: str = "",
    details: dict[str, Any] | None = None,
    api_key_prefix: str | None = None,
    ip_address: str | None = None,
    project: Any = None,
) -> AuditEvent:
    """The unsaved event ``record()`` writes (see there for the arguments and what they raise)."""
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(event_type)
    severity = severity or EVENT_TYPES[event_type]
    if severity not in SEVERITIES:
        raise ValueError(f"unknown audit severity {severity!r}")
    if outcome not in _OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    request = context.get_current_request()
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        actor = user if getattr(user, "is_authenticated", False) else None
    if api_key_prefix is None and request is not None:
        api_key_prefix = getattr(getattr(request, "auth", None), "prefix", None)
    if ip_address is None and request is not None:
        ip_address = context.client_ip(request)
    if resource is not None:
        resource_type = resource_type or resource._meta.label_lower
        resource_id = resource_id or resource.pk
        if project is None:
            project = _resource_project(resource)

    event = AuditEvent(
        occurred_at=timezone.now(),
        event_type=event_type,
        severity=severity,
        outcome=outcome,
        actor_id=getattr(actor, "pk", None),
        actor_name=_text(actor.get_username() if actor is not None else "", 150),
        api_key_prefix=_text(api_key_prefix, 32),
        ip_address=_normalise_ip(ip_address),
        user_agent=_text(request.headers.get("User-Agent", "") if request is not None else "", 512),
        project=_text(getattr(project, "slug", project) or "", 64),
        resource_type=_text(resource_type, 64),
        resource_id=_text(resource_id, 64),
        action=_text(action, 64),
        details=_jsonable(details or {}),
        request_id=_text(context.get_request_id(), 128),
        trace_id=_current_trace_id(),
    )
    return event


def _store(events: list[AuditEvent]) -> None:
    """Insert ``events`` (one statement) in the caller's transaction and arrange their seal."""
    # No savepoint inside a caller's transaction (issue 7: two statements per event saved): an
    # insert that fails propagates and fails the caller's transaction as a whole, as it should, since
    # a change must not commit without its event. Alone, this is the event's own transaction.
    with transaction.atomic(savepoint=False):
        if connection.features.can_return_rows_from_bulk_insert:
            _insert(events)  # one statement, the ids come back (RETURNING)
        elif connection.features.can_return_columns_from_insert:
            for event in events:
                _insert([event])
        else:
            for event in events:
                event.save(force_insert=True)
        if connection.vendor == "postgresql":
            _schedule_seal()
        else:
            mine = {event.pk: event for event in events}
            for sealed in _seal_pending(limit=None):
                if (event := mine.get(sealed["id"])) is not None:
                    event.prev_hash, event.hash = sealed["prev_hash"], sealed["hash"]
                    event.chain_seq = sealed["chain_seq"]
            head = events[-1].chain_seq
            if head is not None and _checkpoint_due(head):
                transaction.on_commit(partial(_checkpoint_if_due, head), robust=True)
    # Counted when it commits: a rolled-back event (a refused request, an admin form's dry run) is
    # not in the trail, so it is not in the count either.
    for event in events:
        transaction.on_commit(metrics.AUDIT_EVENTS.labels(event_type=event.event_type, severity=event.severity).inc)


def _insert(events: list[AuditEvent]) -> None:
    """``bulk_create(events)`` without the ORM's per-call machinery (no signal listens to this model):
    one INSERT ... RETURNING. On the hot path of every audited request, where the ORM's compile step
    cost about as much as the statement itself (a claim of ten tasks audits ten events).

    Several events on PostgreSQL go as one JSON document, ``INSERT ... SELECT ... FROM
    json_to_recordset(%s)``: one parameter whatever the number of rows, so the statement's text is
    the same for every call, and the rows are encoded by ``json.dumps`` in C. Typed column arrays
    (``UNNEST``, as bulk_create does) are quoted element by element in Python, after each value's
    ``get_db_prep_save``: about half of a ten-event insert's CPU. The server reads each member as
    its column's type reads text, so what it stores (and later hashes) is the value given: times
    with their microseconds and zone, text with any quote, backslash or character beyond the BMP
    (the multi-event test checks each). It also runs the JSON form of ten rows faster than their
    arrays, but one row faster as ``VALUES`` (pgbench here: 0.37 against 0.52 ms per transaction),
    so a single event goes as ``VALUES``, each value prepared by its field, as save() does.
    """
    fields, head, recordset = _insert_statement()
    if recordset and len(events) > 1:
        document = json.dumps(
            [{field.column: getattr(event, field.attname) for field in fields} for event in events],
            default=_json_column,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        _insert_returning(events, recordset, [document])
        return
    row = f"({', '.join(['%s'] * len(fields))})"
    size = max(1, connection.ops.bulk_batch_size(fields, events))  # the backend's bound on parameters
    for start in range(0, len(events), size):
        batch = events[start : start + size]
        values = [field.get_db_prep_save(getattr(e, field.attname), connection) for e in batch for field in fields]
        _insert_returning(batch, f"{head} VALUES {', '.join([row] * len(batch))} RETURNING {_PK_COLUMN}", values)


def _insert_returning(events: list[AuditEvent], sql: str, values: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        ids = [pk for (pk,) in cursor.fetchall()]  # in the rows' order, as bulk_create relies on too
    for event, pk in zip(events, ids, strict=True):
        event.pk = pk
        event._state.adding, event._state.db = False, connection.alias


def _json_column(value: Any) -> str:
    """The text PostgreSQL reads back as the same value, for what JSON has no type of its own for."""
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):  # never from _build; a naive time would be read as the server's zone
            raise TypeError("audit times must be aware")
        return value.isoformat()
    raise TypeError(f"no JSON form for an audit column value of type {type(value).__name__}")


_INSERT: dict[str, tuple[list[models.Field], str, str]] = {}
_PK_COLUMN = f'"{AuditEvent._meta.pk.column}"'


def _insert_statement() -> tuple[list[models.Field], str, str]:
    """The fields an INSERT of events sets, its ``INSERT INTO ... (columns)`` head, and on PostgreSQL
    the whole statement reading the rows from one JSON parameter, else ``""``. The record's column
    types have no length (``varchar``, not ``varchar(64)``), so a value too long fails the INSERT
    as it would in ``VALUES`` instead of being cut."""
    if (cached := _INSERT.get(connection.vendor)) is None:
        fields = [field for field in AuditEvent._meta.concrete_fields if not field.primary_key]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in fields)
        head = f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({columns})"
        recordset = ""
        if connection.vendor == "postgresql":
            types = ", ".join(f"{quote(field.column)} {field.db_type(connection).split('(')[0]}" for field in fields)
            recordset = (
                f"{head} SELECT {columns} FROM json_to_recordset(%s::json) AS r({types}) "  # noqa: S608 - names only
                f"RETURNING {_PK_COLUMN}"
            )
        cached = _INSERT[connection.vendor] = (fields, head, recordset)
    return cached


def _resource_project(resource: models.Model) -> Any:
    """The project slug of a project-owned model instance, the slug of a project, or None."""
    if resource._meta.label_lower == "accounts.project":
        return getattr(resource, "slug", None)
    if getattr(resource, "project_id", None) is not None:
        return resource.project  # cached on the instance by the service that loaded it
    return None


def audit_seal(*, batch: int = 1000) -> int:
    """Link every committed, unsealed event into the hash chain, oldest id first; return how many.

    Waits for the chain lock (a transaction-scoped advisory lock on PostgreSQL; held only while
    sealing, never during the callers' own transactions). Events are chained in the order the
    sealer finds them committed, which ``chain_seq`` records; a late commit with a lower id simply
    comes later in the chain. Each batch is its own transaction, so a crash leaves a valid, shorter
    chain. Inside a transaction, it seals in that transaction (and sees its own uncommitted events).
    No automatic checkpoint: ``seal_now()`` is this plus the checkpoint when one is due.
    """
    return len(_seal_all(batch=batch))


def seal_now() -> int:
    """Seal every pending event now, in the caller's thread, and return how many were sealed.

    On PostgreSQL recording only wakes this process's background sealer; this is the way to wait
    for the seal (operators, tests, a process about to hand the trail to someone): once it returns,
    every event committed before the call, and inside a transaction the caller's own, is in the
    chain. Like the background sealer, it writes an automatic checkpoint when one is due (after
    the commit, when called inside a transaction).
    """
    sealed = _seal_all(batch=1000)
    if sealed and _checkpoint_due(head := sealed[-1]["chain_seq"]):
        transaction.on_commit(partial(_checkpoint_if_due, head), robust=True)
    return len(sealed)


def _seal_all(*, batch: int) -> list[dict[str, Any]]:
    sealed: list[dict[str, Any]] = []
    relax = connection.vendor == "postgresql" and not connection.in_atomic_block
    while True:
        with transaction.atomic():
            _lock_chain()
            if relax:
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off")  # see _try_seal_batch
            rows = _seal_pending(limit=batch)
        sealed += rows
        if len(rows) < batch:
            return sealed


def _schedule_seal() -> None:
    """Wake the sealer after the current transaction commits: once, however many events it records.

    The seal links every event committed before it, so a transaction that records many (a claim of
    ten tasks, a batch completion) needs one wake-up, not one per event. The callback already
    registered moves to the end and is kept only under the savepoints open both when it was
    registered and now: a rollback of any of those removes every event that relies on it, while a
    rollback of a savepoint opened since leaves the earlier events, and the callback, in place.
    (Django drops a callback when a savepoint in its set rolls back:
    ``BaseDatabaseWrapper.savepoint_rollback``.)
    """
    callbacks = connection.run_on_commit
    for index, (sids, func, robust) in enumerate(callbacks):
        if func is _seal_after_commit:
            # Replaced by a no-op rather than removed, so the list only grows (test helpers that run
            # the callbacks registered during a block count on that).
            callbacks[index] = (sids, _sealed_later, robust)
            callbacks.append((sids & set(connection.savepoint_ids), func, robust))
            return
    transaction.on_commit(_seal_after_commit, robust=True)


def _sealed_later() -> None:
    """Where a seal callback was, before a later event of the same transaction took it over."""


def _seal_after_commit() -> None:
    """After the caller's commit: wake this process's sealer. No SQL, nothing to wait for."""
    _sealer.wake()


class _Sealer:
    """This process's background sealer (PostgreSQL): one daemon thread with its own connection.

    ``wake()`` (after a commit that recorded events) starts it when needed and asks for a round.
    A round starts at most every ``SYMPHONY_AUDIT_SEAL_INTERVAL`` seconds, so under load each round seals a batch
    of everyone's events. It *tries* the chain lock (``_try_seal_batch``):

    - taken: it seals every pending event, commits, then looks for events committed meanwhile (the
      re-check after releasing the lock) and, if any, asks itself for another round;
    - held by another sealer (this or another process): that holder re-checks after releasing it,
      which is after our writer's commit, so it (or its successor) seals our events. We still look
      again ``SEAL_RETRY`` later, in case the holder rolled back or died instead.

    Idle, it polls every ``SYMPHONY_AUDIT_SEAL_IDLE_POLL`` seconds for events a killed process left unsealed. A
    failed round logs ``audit_seal_failed`` and loses nothing: the events stay pending for the next.
    A process that exits normally seals what is pending first (``atexit``); a forked child starts
    its own thread on its first ``wake()``.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        self._wakeup = threading.Event()
        self._stopping = False
        self._delay: float | None = None  # the batch window, until a round asks for another delay

    def wake(self) -> None:
        if self._thread is None or self._pid != os.getpid():
            with self._guard:
                if self._pid != os.getpid():
                    self._reset()  # forked: the parent's thread does not exist here
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
                    self._thread.start()
        self._wakeup.set()

    def running(self) -> bool:
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    def stop(self, *, flush: bool) -> None:
        """End the thread (and close its connection); with ``flush``, then seal what is pending here."""
        thread = self._thread if self._pid == os.getpid() else None
        if thread is None:
            return
        self._stopping = True
        self._wakeup.set()
        thread.join(timeout=30)
        with self._guard:
            self._reset()
        if flush and not connection.in_atomic_block:
            try:
                audit_seal()
            except Exception:  # the events stay pending for the next sealer, audit_verify or purge
                log.warning("audit_seal_failed", exc_info=True)

    def _run(self) -> None:
        last = 0.0
        try:
            while not self._stopping:
                woken = self._wakeup.wait(timeout=settings.SYMPHONY_AUDIT_SEAL_IDLE_POLL)
                if self._stopping:
                    break
                delay = settings.SYMPHONY_AUDIT_SEAL_INTERVAL if self._delay is None else self._delay
                if woken and (pause := last + delay - time.monotonic()) > 0:
                    time.sleep(pause)  # the batch window: commits keep arriving meanwhile
                self._wakeup.clear()
                last = time.monotonic()
                again = self._round(poll=not woken)
                if again is not None:
                    self._delay = again
                    self._wakeup.set()
                elif not woken:
                    connection.close()  # idle: hold no connection between polls
        finally:
            connections.close_all()

    def _round(self, *, poll: bool) -> float | None:
        """One round; returns the delay before the next one, or None when nothing is left to do."""
        head_seq = None
        try:
            if poll and not AuditEvent.objects.filter(_PENDING).exists():
                return None
            while (sealed := _try_seal_batch()) is not None:
                if sealed:
                    head_seq = sealed[-1]["chain_seq"]
                if len(sealed) < 1000:
                    break
            else:
                return SEAL_RETRY  # another sealer holds the lock: it re-checks; we look again later
            pending = AuditEvent.objects.filter(_PENDING).exists()  # the re-check, after releasing the lock
        except Exception:  # a failed seal loses nothing: the next one (or audit_verify) picks the events up
            log.warning("audit_seal_failed", exc_info=True)
            connection.close()
            return settings.SYMPHONY_AUDIT_SEAL_IDLE_POLL
        finally:
            if head_seq is not None and _checkpoint_due(head_seq):
                _checkpoint_if_due(head_seq)
        return settings.SYMPHONY_AUDIT_SEAL_INTERVAL if pending else None


_sealer = _Sealer()
# A process that recorded events and exits normally (a management command, a test run, a worker
# shutting down) leaves none of them unsealed.
atexit.register(lambda: _sealer.stop(flush=True))


def _try_seal_batch(batch: int = 1000) -> list[dict[str, Any]] | None:
    """Seal one batch if the chain lock is free (PostgreSQL) and return it; None when another sealer has it.

    The seal commits with ``synchronous_commit = off`` when it is its own transaction. Safe because
    a seal is derived data: the events were committed durably by their own transactions, and a
    seal lost in a crash leaves them unsealed, to be sealed again by the next seal. WAL is written
    in order, so a later durable commit implies every earlier seal is durable too: no hole in the
    chain. This saves a WAL flush per seal. Never inside someone else's transaction, whose own
    durability it would weaken.
    """
    relax = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        # One round trip: try the lock, and relax this transaction's commit when it is ours alone.
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s), set_config('synchronous_commit',"
            " CASE WHEN %s THEN 'off' ELSE current_setting('synchronous_commit') END, true)",
            [_CHAIN_LOCK_ID, relax],
        )
        if not cursor.fetchone()[0]:
            return None
        return _seal_pending(limit=batch)


def _seal_pending(*, limit: int | None) -> list[dict[str, Any]]:
    """Chain up to ``limit`` unsealed events (the caller holds the chain lock and a transaction).

    Returns them as ``values()`` rows with their new ``prev_hash``, ``hash`` and ``chain_seq``.
    Hashes are computed from the rows as read back from the database, so they cover exactly what
    is stored. Rows, not model instances, and one UPDATE for the batch: the sealer's own cost is
    what bounds how many events a second one sealer can link.
    """
    # The chain's head comes with the pending events, as two uncorrelated subqueries that PostgreSQL
    # and SQLite evaluate once: one statement instead of two per seal. Both are read in the same
    # snapshot, under the chain lock.
    head = AuditEvent.objects.filter(chain_seq__isnull=False).order_by("-chain_seq")
    pending = (
        AuditEvent.objects.filter(_PENDING)
        .annotate(head_seq=Subquery(head.values("chain_seq")[:1]), head_hash=Subquery(head.values("hash")[:1]))
        .order_by("id")
        .values("head_seq", "head_hash", *CHAIN_VALUES)
    )
    rows = list(pending if limit is None else pending[:limit])
    if not rows:
        return []
    last = {"chain_seq": rows[0]["head_seq"], "hash": rows[0]["head_hash"]}
    if last["chain_seq"] is None:
        last = _empty_chain_head()
    prev_hash, seq = last["hash"], last["chain_seq"]
    for row in rows:
        seq += 1
        row["prev_hash"], row["chain_seq"] = prev_hash, seq
        row["hash"] = prev_hash = compute_hash(row, prev_hash)
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One JSON document rather than an array per column, as in ``_insert``: psycopg quotes
            # arrays element by element in Python, five times the CPU, inside the chain lock.
            seals = [{key: row[key] for key in ("id", "prev_hash", "hash", "chain_seq")} for row in rows]
            cursor.execute(
                f"UPDATE {table} AS e SET prev_hash = s.prev_hash, hash = s.hash, chain_seq = s.chain_seq"  # noqa: S608
                " FROM json_to_recordset(%s::json) AS s(id bigint, prev_hash varchar, hash varchar, chain_seq bigint)"
                " WHERE e.id = s.id",
                [json.dumps(seals)],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET prev_hash = %s, hash = %s, chain_seq = %s WHERE id = %s",  # noqa: S608
                [(r["prev_hash"], r["hash"], r["chain_seq"], r["id"]) for r in rows],
            )
    return rows


def _empty_chain_head() -> dict[str, Any]:
    """Where a chain with no sealed event goes on from: genesis, or the anchor of a purge of everything."""
    purge = (AuditEvent.objects.filter(_PENDING, event_type="audit.purged").order_by("id").values("details")).first()
    if purge is not None:
        return {"chain_seq": purge["details"]["last_purged_seq"], "hash": purge["details"]["last_purged_hash"]}
    return {"chain_seq": 0, "hash": GENESIS_HASH}


def _lock_chain() -> None:
    """Serialise sealers (and purges) so each event links to the one sealed before it.

    On PostgreSQL a transaction-scoped advisory lock; READ COMMITTED lets the queries after it see
    every commit made before it. SQLite runs with ``transaction_mode=IMMEDIATE``, where every
    write transaction already holds the database lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])


def audit_checkpoint(*, every: int = 1, wait: bool = True) -> Checkpoint | None:
    """Write a signed checkpoint of the chain's head to ``SYMPHONY_AUDIT_CHECKPOINT_DIR`` and return it.

    Only when at least ``every`` events were sealed since the newest checkpoint (else None). One
    writer at a time, across processes (``_checkpoint_lock``): ``wait=False`` gives up at once when
    another holds it, since that one covers the same events. The lock is held from reading the
    newest checkpoint to writing the next, so checkpoints are numbered and chained without forks.
    Before signing, the newest checkpoint's position must still hold the hash it signed; otherwise
    ``CheckpointError`` (the chain was cut or rewritten: signing on would bless it). Also raised
    when the folder or the key is not usable.
    """
    folder, key = checkpoints.configured_folder(), checkpoints.signing_key()
    if folder is None or key is None:
        raise CheckpointError("checkpoints need SYMPHONY_AUDIT_CHECKPOINT_DIR and SYMPHONY_AUDIT_SIGNING_KEY_FILE")
    with _checkpoint_lock(wait=wait) as locked:
        if not locked:
            return None
        try:
            previous = checkpoints.newest(folder)
        except OSError as exc:
            raise CheckpointError(f"cannot read the checkpoint folder: {exc}") from exc
        _known_checkpoint_seq[settings.SYMPHONY_AUDIT_CHECKPOINT_DIR] = previous.seq if previous else 0
        with transaction.atomic():
            sealed = AuditEvent.objects.filter(chain_seq__isnull=False)
            head = sealed.order_by("-chain_seq").values("id", "chain_seq", "hash").first()
            start = sealed.order_by("chain_seq").values("chain_seq", "prev_hash").first()
            if previous is not None and (head is None or previous.seq >= start["chain_seq"]):
                stored = sealed.filter(chain_seq=previous.seq).values_list("hash", flat=True).first()
                if stored != previous.hash:
                    raise CheckpointError(
                        f"the chain no longer matches {previous.name} at position {previous.seq}: events were"
                        " deleted or rewritten; run audit_verify"
                    )
            if head is None or (previous is not None and head["chain_seq"] - previous.seq < max(every, 1)):
                return None
            if connection.vendor == "postgresql":
                # Seals commit with synchronous_commit off: a crash could lose the one read here,
                # and the resealed chain might differ from what was signed. Taking a transaction id
                # makes this commit write a record, and flushing it flushes every earlier seal.
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_current_xact_id()")
        try:
            checkpoint = checkpoints.write(folder, key=key, previous=previous, head=head, start=start)
        except OSError as exc:
            raise CheckpointError(f"cannot write to the checkpoint folder: {exc}") from exc
    _known_checkpoint_seq[settings.SYMPHONY_AUDIT_CHECKPOINT_DIR] = checkpoint.seq
    log.info("audit_checkpoint_written", checkpoint=checkpoint.number, seq=checkpoint.seq, file=checkpoint.name)
    return checkpoint


@contextmanager
def _checkpoint_lock(*, wait: bool) -> Iterator[bool]:
    """Serialise checkpoint writers across processes; yields whether this one may write.

    PostgreSQL: a session-level advisory lock, so it spans the commit that makes the head durable
    and the file written after it. SQLite: a write transaction (``IMMEDIATE``) around both.
    """
    if connection.vendor != "postgresql":
        with transaction.atomic():
            yield True
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_lock(%s)" if wait else "SELECT pg_try_advisory_lock(%s)", [_CHECKPOINT_LOCK_ID]
        )
        locked = wait or bool(cursor.fetchone()[0])
    if not locked:
        yield False
        return
    try:
        yield True
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_CHECKPOINT_LOCK_ID])


def _checkpoint_due(head_seq: int) -> bool:
    """Cheap, on every seal: might ``SYMPHONY_AUDIT_CHECKPOINT_EVERY`` events have passed since the last one?"""
    every, folder = settings.SYMPHONY_AUDIT_CHECKPOINT_EVERY, settings.SYMPHONY_AUDIT_CHECKPOINT_DIR
    if not every or not folder:
        return False
    known = _known_checkpoint_seq.get(folder)
    return known is None or head_seq - known >= every


def _checkpoint_if_due(head_seq: int, *, every: int | None = None) -> None:
    """The automatic checkpoint, after a commit: never raises, never waits for another writer."""
    try:
        audit_checkpoint(every=every or settings.SYMPHONY_AUDIT_CHECKPOINT_EVERY, wait=False)
    except Exception:  # the events are committed and sealed; the next interval tries again
        _known_checkpoint_seq[settings.SYMPHONY_AUDIT_CHECKPOINT_DIR] = head_seq
        log.error("audit_checkpoint_failed", seq=head_seq, exc_info=True)


@transaction.atomic
def audit_purge(*, before: dt.datetime, actor: Any = None) -> int:
    """Delete the oldest events, up to the first one that occurred at or after ``before``.

    Only a prefix of the chain (by ``chain_seq``) is ever removed, so what remains is one unbroken
    chain. The purge verifies the part it removes first and refuses (``ChainBroken``) to destroy a
    broken one, then records an ``audit.purged`` event whose details keep the hash of the last
    purged event: the anchor ``audit_verify`` accepts as the new first event's ``prev_hash``. With
    a signing key the anchor is signed, so that one written by hand is told apart. Returns the
    number deleted. On PostgreSQL the database role must be a member of ``symphony_audit_purger``
    (``PurgeNotPermitted`` otherwise): the application's role is not.
    """
    if not _may_purge():
        raise PurgeNotPermitted(
            "the database role may not delete audit events: run audit_purge as a member of symphony_audit_purger"
            " (docs/DEPLOYMENT.md, Database roles)"
        )
    key = checkpoints.signing_key()
    _lock_chain()
    _seal_pending(limit=None)
    sealed = AuditEvent.objects.filter(chain_seq__isnull=False)
    first_kept = sealed.filter(occurred_at__gte=before).order_by("chain_seq").values_list("chain_seq", flat=True)
    first_kept_seq = first_kept.first()
    doomed = sealed if first_kept_seq is None else sealed.filter(chain_seq__lt=first_kept_seq)
    last_purged = doomed.order_by("-chain_seq").values("id", "hash", "chain_seq").first()
    if last_purged is None:
        return 0
    result = verify_chain(stop_after_seq=first_kept_seq or last_purged["chain_seq"], seal=False)
    if not result.ok:
        raise ChainBroken(result)
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE chain_seq <= %s", [last_purged["chain_seq"]])  # noqa: S608
        count = cursor.rowcount
    details = {
        "count": count,
        "before": before.isoformat(),
        "last_purged_id": last_purged["id"],
        "last_purged_seq": last_purged["chain_seq"],
        "last_purged_hash": last_purged["hash"],
    }
    record("audit.purged", actor=actor, details=checkpoints.sign_anchor(details, key) if key else details)
    # Sealed here, under the chain lock this transaction holds: the checkpoint after the commit then
    # signs a chain that already starts from the purge's anchor and contains its event.
    _seal_pending(limit=None)
    if checkpoints.configured_folder() is not None:
        # Sign the chain's new start at once, rather than after the next interval.
        transaction.on_commit(partial(_checkpoint_if_due, 0, every=1), robust=True)
    log.info("audit_purged", count=count, before=before.isoformat(), last_purged_id=last_purged["id"])
    return count


def _may_purge() -> bool:
    """Whether the database role may delete audit events (what the trigger of migration 0004 checks)."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR EXISTS ("
            " SELECT 1 FROM pg_roles AS purger WHERE purger.rolname = 'symphony_audit_purger'"
            " AND pg_has_role(current_user, purger.oid, 'MEMBER'))"
        )
        return bool(cursor.fetchone()[0])


@transaction.atomic
def audit_export_start(
    *, queryset: models.QuerySet, fmt: str, filters: dict[str, Any], via: str, actor: Any = None
) -> tuple[models.QuerySet, int]:
    """Fix what an export will contain, count it, and record ``audit.exported``; return both.

    The export streams after this returns, so the event is recorded first, with an exact count:
    the queryset is bounded by the highest id that exists now, so events appended while it streams
    (this ``audit.exported`` one included) are not part of it. An export whose download is then
    cut short is still recorded: the data may have left. Raises ``ValueError`` for an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unsupported export format {fmt!r}")
    upper = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    bounded = queryset.filter(id__lte=upper)
    count = bounded.count()
    record(
        "audit.exported",
        actor=actor,
        details={"format": fmt, "filters": filters, "rows": count, "via": via, "upper_id": upper},
    )
    return bounded, count


def _text(value: Any, limit: int) -> str:
    """A string for a text column: NUL removed (PostgreSQL refuses it), cut to the column's length."""
    return str(value or "").replace("\x00", "")[:limit]


def _normalise_ip(value: str | None) -> str | None:
    """The canonical text of an IP (PostgreSQL's inet gives it back that way, and the hash covers it).

    Something that is not an IP is dropped rather than failing the audited action.
    """
    if not value:
        return None
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so the hashed content equals what the database gives back.

    NUL characters are removed (PostgreSQL's jsonb refuses ``\\u0000``); oversized details are
    replaced by a marker rather than failing the audited action.
    """
    text = json.dumps(details, default=str, sort_keys=True)
    if len(text) > _MAX_DETAILS_BYTES:
        return {"truncated": True, "size": len(text)}
    # json.dumps writes a NUL as \u0000 (ensure_ascii), so text without that has none to remove.
    return _strip_nul(json.loads(text)) if "\\u0000" in text else json.loads(text)


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(key): _strip_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strip_nul(item) for item in value]
    return value


def _current_trace_id() -> str:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry is a hard dependency
        return ""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""
