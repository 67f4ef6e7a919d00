"""``make screenshots``: pictures of the operator console from the demo data, for docs/console.md.

Builds a throwaway install (SQLite under a temporary folder), loads the demo fleet and workflow
(``seed_demo``, ``seed_demo_workflow``), runs the demo tasks through the dispatch services as the demo
agents would (most succeed, one fails, a few stay pending or running), starts ``runserver`` on a free
port and saves one 1280-pixel-wide PNG per console page into ``docs/console/`` with Debian's Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SYMPHONY_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "demo-screenshots-only"  # noqa: S105 - a throwaway install

# Runs inside the throwaway install (manage.py shell): play the demo agents for a while.
PLAY = """
from datetime import timedelta
from django.utils import timezone
from accounts.models import User
from agents import services
from agents.models import Agent, Task
from agents.services import dispatch

agents = list(Agent.objects.filter(name__startswith="demo-agent"))
for _ in range(4):
    for agent in agents:
        Agent.objects.filter(pk=agent.pk).update(status="busy", last_heartbeat_at=timezone.now())
        for task in dispatch.task_claim(agent=agent, max_tasks=10):
            if task.kind == "sleep" or (task.pk % 7 == 3 and not task.workflow):
                dispatch.task_fail(task_id=task.pk, agent=agent, attempt=task.last_attempt, error="demo: it raised")
            else:
                dispatch.task_complete(task_id=task.pk, agent=agent, attempt=task.last_attempt, result={"ok": True})
demo = User.objects.get(username="demo")
orchestra = agents[0].orchestras.first()
for i in range(6):
    services.task_submit(submitter=demo, orchestra=orchestra, kind="word_count", input={"text": f"later {i}"})
dispatch.task_claim(agent=agents[0], max_tasks=1)
Agent.objects.filter(pk=agents[-1].pk).update(last_heartbeat_at=timezone.now() - timedelta(minutes=10))
from decimal import Decimal
import random
from agents.flow_models import UsageRecord
rng = random.Random(7)
finished = list(Task.objects.filter(status="succeeded").select_related("agent", "orchestra")[:40])
now = timezone.now()
UsageRecord.objects.bulk_create(
    UsageRecord(
        task=task, project_id=task.project_id, orchestra_id=task.orchestra_id, agent=task.agent,
        submitter_id=task.submitter_id, model=rng.choice(["gpt-4o", "gpt-4o-mini", "claude-sonnet"]),
        input_tokens=rng.randint(200, 4000), output_tokens=rng.randint(50, 900),
        cost=Decimal(rng.randint(1, 900)) / 10000, source="completion",
        created_at=now - timedelta(minutes=rng.randint(0, 60 * 23)),
    )
    for task in finished for _ in range(3)
)
User.objects.create_superuser("admin", "admin@example.test", "PASSWORD")
"""

PAGES = [
    ("dashboard", "/admin/"),
    ("task", None),  # the newest finished task, found at run time
    ("agent", "/admin/agents/agent/"),
    ("agents", "/admin/agents/agent/"),
    ("workflow", "/admin/workflows/workflowrun/"),
    ("approvals", "/admin/console/approvals/"),
    ("tasks", "/admin/agents/task/"),
    ("submit-task", "/admin/console/tasks/submit/"),
    ("submit-workflow", "/admin/console/workflows/submit/"),
    ("usage", "/admin/console/usage/"),
    ("audit", "/admin/audit/auditevent/"),
    ("not-found", "/admin/agents/task/999999/change/"),
]


def _free_port() -> int:
    """A free port: from ``SYMPHONY_SCREENSHOT_PORTS`` (``first-last``, for a shared machine) or any."""
    first, _, last = os.environ.get("SYMPHONY_SCREENSHOT_PORTS", "0-0").partition("-")
    for port in range(int(first), int(last or first) + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise SystemExit("no free port in SYMPHONY_SCREENSHOT_PORTS")


def _manage(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    command = [sys.executable, "manage.py", *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, input=stdin, text=True, stdout=subprocess.DEVNULL)  # noqa: S603


def _wait(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - our own server
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the server did not answer at {url}")


def _shoot(base: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    made = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                             "--disable-gpu", "--no-first-run"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#console-dashboard")
        for name, path in PAGES:
            if name == "task":
                page.goto(f"{base}/admin/agents/task/?status__exact=failed")
                page.click("#result_list tbody tr th a")
            elif name in {"agent", "workflow"}:
                page.goto(f"{base}{path}")
                page.click("#result_list tbody tr th a")
            else:
                page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            made.append(target)
        browser.close()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "console"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="symphony-screenshots-") as folder:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            SYMPHONY_VAR_DIR=folder,
            DEBUG="true",
            SECRET_KEY="screenshots-only-0123456789abcdefghijkl",  # noqa: S106 - a throwaway install
            LOG_LEVEL="WARNING",
            STATICFILES_STORAGE="django.contrib.staticfiles.storage.StaticFilesStorage",
        )
        _manage(env, "migrate", "-v0")
        _manage(env, "seed_demo", "--submit", "12")
        _manage(env, "seed_demo_workflow")
        _manage(env, "shell", stdin=PLAY.replace("PASSWORD", PASSWORD))
        port = _free_port()
        server = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait(f"http://127.0.0.1:{port}/health/live")
            for path in _shoot(f"http://127.0.0.1:{port}", out):
                print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size} bytes")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
