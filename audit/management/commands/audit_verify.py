"""``manage.py audit_verify``: walk the hash chain and check it against every signed checkpoint.

Exits 0 when intact; 1 naming the first broken event, or every way the table falls short of the
checkpoints (truncated, newest events deleted, rewritten, a forged purge anchor, a checkpoint
removed or forged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import checkpoints
from audit.verification import DEFAULT_CHUNK_SIZE, verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit trail's hash chain, and check it against the signed checkpoints in"
        " SYMPHONY_AUDIT_CHECKPOINT_DIR. Exits non-zero naming what is broken or missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="Rows read per query.")
        parser.add_argument(
            "--checkpoint-dir", help="Checkpoint folder (default: SYMPHONY_AUDIT_CHECKPOINT_DIR, when set)."
        )
        parser.add_argument(
            "--public-key",
            action="append",
            default=[],
            metavar="PEM",
            help="Trust checkpoints signed by this Ed25519 key too (repeatable; the signing key's is always trusted).",
        )
        parser.add_argument(
            "--every",
            type=int,
            default=None,
            help="Automatic checkpoint interval to expect (default: SYMPHONY_AUDIT_CHECKPOINT_EVERY; 0: none).",
        )
        parser.add_argument("--no-checkpoints", action="store_true", help="Check the chain alone.")

    def handle(
        self,
        *args: Any,
        chunk_size: int,
        checkpoint_dir: str | None,
        public_key: list[str],
        every: int | None,
        no_checkpoints: bool,
        **options: Any,
    ) -> None:
        if chunk_size < 1:
            raise CommandError("--chunk-size must be a positive integer")
        folder = Path(checkpoint_dir) if checkpoint_dir else checkpoints.configured_folder()
        if no_checkpoints:
            folder = None
        keys = {}
        if folder is not None:
            try:
                keys = checkpoints.trusted_keys(public_key)
            except (OSError, ValueError) as exc:
                raise CommandError(f"--public-key: {exc}") from exc
            if not keys:
                raise CommandError(
                    "no key to check the checkpoints' signatures: set SYMPHONY_AUDIT_SIGNING_KEY_FILE"
                    " or give --public-key"
                )
        result = verify_chain(chunk_size=chunk_size)
        if not result.ok:
            raise CommandError(
                f"audit chain BROKEN at event {result.broken_id}: {result.reason} "
                f"({result.checked} events before it verified)",
                returncode=1,
            )
        if result.unsealed:
            self.stderr.write(f"{result.unsealed} events are not sealed yet (their transactions are still committing)")
        summary = (
            "audit chain OK: no events"
            if result.head_id is None
            else f"audit chain OK: {result.checked} events verified; head event {result.head_id}"
            f" (position {result.head_seq}) hash {result.head_hash}"
        )
        if folder is None:
            self.stdout.write(summary)
            return
        report = checkpoints.read_folder(folder, keys)
        interval = settings.SYMPHONY_AUDIT_CHECKPOINT_EVERY if every is None else every
        problems = report.problems + checkpoints.check_chain(result, report, keys=keys, every=interval)
        if problems:
            listed = "\n".join(f"  - {problem}" for problem in problems)
            raise CommandError(
                f"audit trail does NOT match the checkpoints in {folder} ({len(problems)} problem(s)):\n{listed}",
                returncode=1,
            )
        newest = report.checkpoints[-1] if report.checkpoints else None
        self.stdout.write(
            f"{summary}; matches {len(report.checkpoints)} signed checkpoint(s) in {folder}"
            + (f" (newest: {newest.number}, position {newest.seq})" if newest else "")
        )
