"""``manage.py run_webhooks``: the webhook sender process (several may run at once)."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from webhooks import sender

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = "Deliver pending webhook events (signed, retried with backoff). Safe to run several at once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch", type=int, default=50, help="Deliveries claimed per round (default 50).")
        parser.add_argument("--threads", type=int, default=8, help="Concurrent HTTP requests (default 8).")
        parser.add_argument("--poll", type=float, default=1.0, help="Seconds to sleep when nothing is due.")
        parser.add_argument("--once", action="store_true", help="Send what is due now, then exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("webhook_sender_started", batch=options["batch"], threads=options["threads"])
        total = 0
        with ThreadPoolExecutor(max_workers=max(1, options["threads"]), thread_name_prefix="webhook") as pool:
            while not stopping:
                close_old_connections()
                try:
                    sent = sender.run_once(pool=pool, batch=max(1, options["batch"]))
                except Exception:  # a database outage must not end the process: retry after a pause
                    log.exception("webhook_round_failed")
                    sent = 0
                    if options["once"]:
                        raise
                    time.sleep(options["poll"])
                total += sent
                if options["once"] and sent == 0:
                    break
                if sent == 0:
                    time.sleep(options["poll"])
        log.info("webhook_sender_stopped", sent=total)
        self.stdout.write(f"sent {total}")
