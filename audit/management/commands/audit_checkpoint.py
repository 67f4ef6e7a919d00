"""``manage.py audit_checkpoint``: sign the chain's head into the checkpoint folder (cron, and after purges)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoints import CheckpointError, configured_folder
from audit.services import audit_checkpoint, audit_seal


class Command(BaseCommand):
    help = (
        "Write a signed checkpoint of the audit chain's head to SYMPHONY_AUDIT_CHECKPOINT_DIR, naming the previous"
        " one. Exits 1 when the chain no longer matches the newest checkpoint."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every", type=int, default=1, help="Only if at least this many events came since the newest checkpoint."
        )

    def handle(self, *args: Any, every: int, **options: Any) -> None:
        if every < 1:
            raise CommandError("--every must be a positive integer")
        audit_seal()
        try:
            checkpoint = audit_checkpoint(every=every)
        except CheckpointError as exc:
            raise CommandError(str(exc), returncode=1) from exc
        if checkpoint is None:
            self.stdout.write(f"audit checkpoints in {configured_folder()} are up to date")
            return
        self.stdout.write(
            f"wrote checkpoint {checkpoint.number} (position {checkpoint.seq}, event {checkpoint.event_id},"
            f" hash {checkpoint.hash}) to {configured_folder() / checkpoint.name}"
        )
