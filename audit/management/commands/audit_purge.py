"""``manage.py audit_purge --before DATE``: retention, the only way events leave the trail."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.management.commands._args import parse_moment
from audit.services import PurgeNotPermitted, audit_purge
from audit.verification import ChainBroken


class Command(BaseCommand):
    help = (
        "Delete the oldest audit events, up to the first one at or after --before (ISO-8601 date or date-time, "
        "UTC when naive). Records an audit.purged event that anchors the remaining chain (signed with"
        " SYMPHONY_AUDIT_SIGNING_KEY_FILE when set). On PostgreSQL the database role must be a member of"
        " symphony_audit_purger."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--before", required=True, help="Purge events that occurred before this moment.")

    def handle(self, *args: Any, before: str, **options: Any) -> None:
        moment = parse_moment("--before", before)
        try:
            count = audit_purge(before=moment)
        except ChainBroken as exc:
            raise CommandError(f"refusing to purge: {exc}", returncode=1) from exc
        except PurgeNotPermitted as exc:
            raise CommandError(str(exc), returncode=1) from exc
        self.stdout.write(f"purged {count} audit events before {moment.isoformat()}")
