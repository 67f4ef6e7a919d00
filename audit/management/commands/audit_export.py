"""``manage.py audit_export``: the API's export for scheduled jobs, to stdout or a file."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import export, selectors, services
from audit.filters import AuditEventFilter, applied_filters


class Command(BaseCommand):
    help = "Export audit events as CSV, JSON or JSON Lines (same filters and format as the API export)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", dest="fmt", choices=sorted(export.FORMATS), default="csv")
        parser.add_argument("--since", help="ISO-8601: events at or after this time.")
        parser.add_argument("--until", help="ISO-8601: events before this time.")
        parser.add_argument("--type", dest="type", help="An event type, or a prefix such as agent.*")
        parser.add_argument("--severity")
        parser.add_argument("--outcome")
        parser.add_argument("--actor", help="The actor's username.")
        parser.add_argument("--output", help="Write to this file instead of stdout.")

    def handle(self, *args: Any, fmt: str, output: str | None, **options: Any) -> None:
        data = {name: options[name] for name in ("since", "until", "type", "severity", "outcome", "actor")}
        data = {name: value for name, value in data.items() if value is not None}
        filterset = AuditEventFilter(data=data, queryset=selectors.audit_event_list())
        if not filterset.is_valid():
            name, errors = next(iter(filterset.errors.items()))
            raise CommandError(f"--{name}: {' '.join(errors)}")
        queryset, count = services.audit_export_start(
            queryset=filterset.qs, fmt=fmt, filters=applied_filters(data), via="command"
        )
        if output:
            with open(output, "w", encoding="utf-8", newline="") as stream:
                stream.writelines(export.render(export.iter_rows(queryset), fmt))
            self.stdout.write(f"exported {count} audit events to {output}")
        else:
            for chunk in export.render(export.iter_rows(queryset), fmt):
                self.stdout.write(chunk, ending="")
