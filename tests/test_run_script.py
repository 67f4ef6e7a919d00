"""scripts/run.sh (`make run`): SYMPHONY_DEMO_WORKERS is a count, and commands typed later find the
install's generated secret key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import ROOT, free_port, running, wait_for

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "DATABASE_URL", "REDIS_URL"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return {**env, "PY": sys.executable, "SYMPHONY_VAR_DIR": str(tmp_path / "var"), "LOG_LEVEL": "WARNING",
            "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage", **extra}  # fmt: skip


def _session_commands(session_leader: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "sid=,args="], capture_output=True, text=True, check=True).stdout
    return [
        args
        for sid, _, args in (line.strip().partition(" ") for line in out.splitlines())
        if sid == str(session_leader)
    ]


def test_it_refuses_a_demo_worker_count_that_is_not_a_number(tmp_path):
    result = subprocess.run(
        ["scripts/run.sh"], cwd=ROOT, env=_env(tmp_path, SYMPHONY_DEMO_WORKERS="yes"), capture_output=True, text=True
    )

    assert result.returncode == 2
    assert "SYMPHONY_DEMO_WORKERS must be a count" in result.stderr


def test_it_starts_as_many_demo_workers_as_asked_and_commands_find_the_key(tmp_path):
    port = free_port()
    env = _env(tmp_path, PORT=str(port), SYMPHONY_DEMO_WORKERS="3", SYMPHONY_DEMO_TASKS="0")
    with running(["scripts/run.sh"], env=env, log=tmp_path / "run.log") as process:
        wait_for(f"http://127.0.0.1:{port}/health/live", timeout=120, process=process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = [args for args in _session_commands(process.pid) if "run_agent" in args]
            if len(workers) >= 3:
                break
            time.sleep(0.2)  # polling for the script to start its workers
        # Another shell: no SECRET_KEY, no SECRET_KEY_FILE, only the install's var directory.
        command = subprocess.run(
            [sys.executable, "manage.py", "create_api_key", "demo", "--name", "typed-later", "--rate-limit", "strict"],
            cwd=ROOT,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
        )

    assert len(workers) == 3, (tmp_path / "run.log").read_text()[-2000:]
    assert command.returncode == 0, command.stderr
    assert command.stdout.startswith("sym_")
    assert (tmp_path / "var" / "cache.sqlite3").exists()  # the embedded default's shared cache
