"""Model instances from SQL written once, for the hot paths of the agent protocol.

Building and compiling a queryset costs this machine about a millisecond of CPU per statement, often
more than PostgreSQL takes to run it. Where a statement runs on every request (the agent behind a
key, a completion), it is written once as SQL instead, and its rows become model instances the way
the ORM makes them: each column goes through the backend's and the field's converters (JSON
decoded, SQLite's datetimes parsed), then ``Model.from_db``. The column lists come from the models'
fields, so a new field is selected without touching the SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Model


class Columns:
    """The concrete columns of ``model`` under the table alias ``alias``: ``sql`` lists them for a
    SELECT or RETURNING, and ``build`` turns that many values of a row into an instance."""

    def __init__(self, model: type[Model], alias: str, fields: Sequence[str] | None = None) -> None:
        """All concrete fields, or only ``fields`` (the instance then defers the others, as ``only()``)."""
        self.model = model
        self.alias = alias
        concrete = model._meta.concrete_fields
        self.fields = list(concrete) if fields is None else [model._meta.get_field(name) for name in fields]
        self.attnames = [field.attname for field in self.fields]
        self.sql = ", ".join(f'{alias}."{field.column}"' for field in self.fields)
        self._converters: dict[str, list[tuple[list[Any], Any]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def _for(self, connection: Any) -> list[tuple[list[Any], Any]]:
        converters = self._converters.get(connection.vendor)
        if converters is None:
            converters = []
            for field in self.fields:
                column = field.get_col(self.alias)
                functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                converters.append((functions, column))
            self._converters[connection.vendor] = converters
        return converters

    def build(self, values: Sequence[Any], connection: Any) -> Model:
        converted = []
        for value, (functions, column) in zip(values, self._for(connection), strict=True):
            for function in functions:
                value = function(value, column, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.attnames, converted)

    def split(self, row: Sequence[Any], *others: Columns, connection: Any) -> list[Model]:
        """``row`` holds these columns, then each of ``others``'s: one instance of each."""
        instances, start = [], 0
        for columns in (self, *others):
            instances.append(columns.build(row[start : start + len(columns)], connection))
            start += len(columns)
        return instances
