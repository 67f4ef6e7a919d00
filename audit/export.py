"""Serialising audit events as CSV, JSON or JSON Lines, streamed in constant memory.

One module for every way out of the trail: the API (``/api/v1/audit-events/export/``), the admin's
"Export CSV" button and action, and ``manage.py audit_export``. Rows are read as ``values()`` dicts
(never ORM instances) in keyset-paginated chunks of ``CHUNK_SIZE``: each chunk is one bounded query,
with no server-side cursor (a ``WITH HOLD`` cursor, which Django uses outside a transaction, makes
PostgreSQL materialise the whole result first, and breaks behind a transaction-pooling bouncer).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from audit.chain import HASHED_FIELDS, OPTIONAL_HASHED_FIELDS

#: The exported columns, in order: the event, plus its chain links so a copy can be checked offline.
FIELDS = ("id", *HASHED_FIELDS, *OPTIONAL_HASHED_FIELDS, "chain_seq", "prev_hash", "hash")

#: format -> (Content-Type, file extension)
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "json": ("application/json", "json"),
    "jsonl": ("application/jsonl", "jsonl"),
}

CHUNK_SIZE = 2000
# Cells a spreadsheet would read as a formula (OWASP "CSV injection"): prefix them with a quote.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def iter_rows(queryset: QuerySet, *, chunk_size: int = CHUNK_SIZE) -> Iterator[dict[str, Any]]:
    """The events of ``queryset`` as ``values()`` dicts, oldest first, ``chunk_size`` per query."""
    base = queryset.order_by("id").values(*FIELDS)
    last_id = 0
    while True:
        rows = list(base.filter(id__gt=last_id)[:chunk_size])
        yield from rows
        if len(rows) < chunk_size:
            return
        last_id = rows[-1]["id"]


def iso_utc(value: dt.datetime) -> str:
    """ISO-8601 in UTC with a ``Z``: ``2026-11-27T03:32:42.169935Z``."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def neutralise(cell: str) -> str:
    """Prefix a cell that a spreadsheet would evaluate as a formula with ``'``."""
    return "'" + cell if cell.startswith(_FORMULA_PREFIXES) else cell


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "occurred_at": iso_utc(row["occurred_at"])}


def _csv_cells(row: dict[str, Any]) -> list[Any]:
    cells: list[Any] = []
    for field in FIELDS:
        value = row[field]
        if field == "occurred_at":
            value = iso_utc(value)
        elif field == "details":
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        if value is None:
            value = ""
        cells.append(neutralise(value) if isinstance(value, str) else value)
    return cells


class _Line:
    """A write-only file that hands back what ``csv.writer`` writes (Django's streaming CSV recipe)."""

    def write(self, value: str) -> str:
        return value


def render(rows: Iterable[dict[str, Any]], fmt: str, *, batch: int = 500) -> Iterator[str]:
    """Text chunks of ``rows`` in ``fmt`` (csv, json, jsonl), ``batch`` rows per chunk.

    CSV has a header row and neutralised cells; JSON is one array, streamed; JSON Lines is one
    object per line. Raises ``ValueError`` for another format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unsupported export format {fmt!r}")
    writer = csv.writer(_Line()) if fmt == "csv" else None
    if writer is not None:
        yield writer.writerow(FIELDS)
    if fmt == "json":
        yield "["
    pending: list[str] = []
    first = True
    for row in rows:
        if writer is not None:
            pending.append(writer.writerow(_csv_cells(row)))
        else:
            text = json.dumps(_plain(row), ensure_ascii=False, separators=(",", ":"))
            if fmt == "jsonl":
                pending.append(text + "\n")
            else:
                pending.append(text if first else "," + text)
        first = False
        if len(pending) >= batch:
            yield "".join(pending)
            pending.clear()
    if pending:
        yield "".join(pending)
    if fmt == "json":
        yield "]\n"


def filename(fmt: str, *, now: dt.datetime) -> str:
    return f"audit-events-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}.{FORMATS[fmt][1]}"


def streaming_response(queryset: QuerySet, fmt: str, *, now: dt.datetime) -> StreamingHttpResponse:
    """A download of ``queryset`` in ``fmt``, streamed chunk by chunk (API and admin share it)."""
    content_type, _ = FORMATS[fmt]
    response = StreamingHttpResponse(render(iter_rows(queryset), fmt), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename(fmt, now=now)}"'
    response["Cache-Control"] = "no-store"
    return response
