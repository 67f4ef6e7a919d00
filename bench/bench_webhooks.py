"""Webhook sender throughput: deliveries/s from one ``manage.py run_webhooks`` to a local receiver.

    createdb -h 127.0.0.1 -U postgres symphony_webhooks_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/symphony_webhooks_bench python bench/bench_webhooks.py

N events (default 5000) are written to the outbox for one webhook pointing at a ThreadingHTTPServer on
127.0.0.1 (in this process, answering 200 at once), then one run_webhooks process (its defaults:
batch 50, 8 threads) is started and timed from its first request to the N-th. The deliveries of the
target database are emptied first. Works on the SQLite default too (without DATABASE_URL).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
os.environ.setdefault("SYMPHONY_WEBHOOK_ALLOW_PRIVATE", "true")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from accounts.models import Project
    from audit import hooks
    from tests.servers import WebhookReceiver
    from webhooks.models import Delivery, Webhook
    from webhooks.services import webhook_create

    call_command("migrate", "--noinput", verbosity=0)
    Delivery.objects.all().delete()
    Webhook.objects.all().delete()
    receiver = WebhookReceiver([200])
    project, _ = Project.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    webhook_create(actor=None, project=project, url=receiver.url, events=["task.*"])
    with transaction.atomic():
        for n in range(args.events):
            hooks.emit("task.succeeded", project_id=project.pk, data={"task": {"id": n, "status": "succeeded"}})
    env = {**os.environ}
    sender = subprocess.Popen(
        [sys.executable, "manage.py", "run_webhooks", "--threads", str(args.threads), "--poll", "0.2"],
        cwd=ROOT,
        env=env,
    )
    try:
        while not receiver.requests:
            time.sleep(0.01)
        started = time.monotonic()
        while len(receiver.requests) < args.events:
            if sender.poll() is not None:
                raise SystemExit("run_webhooks exited early")
            time.sleep(0.01)
        elapsed = time.monotonic() - started
    finally:
        sender.terminate()
        sender.wait(timeout=30)
        receiver.close()
    done = Delivery.objects.filter(status="succeeded").count()
    print(f"database: {os.environ.get('DATABASE_URL', 'sqlite (default)').split('@')[-1]}")
    print(f"{args.events} deliveries in {elapsed:.2f} s: {args.events / elapsed:.0f} deliveries/s ({done} recorded)")


if __name__ == "__main__":
    main()
