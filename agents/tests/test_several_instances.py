"""Three Symphony instances on one PostgreSQL and Redis, with real workers killed and restarted
(bench/bench_instances.py, smaller): every task completed exactly once, none lost, the chain whole.

The benchmark runs the same with 10,000 tasks and 24 workers (docs/BENCHMARKS.md); here 24 workers
drain a few hundred tasks while one of them is SIGKILLed every second and a new one started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db]

ROOT = Path(settings.BASE_DIR)


def test_it_completes_every_task_exactly_once_across_three_instances_with_workers_killed() -> None:
    if not (shutil.which("psql") and shutil.which("redis-cli")):
        pytest.skip("needs psql and redis-cli")
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    database = f"{server}/{connection.settings_dict['NAME']}_instances"
    port_base = 18900 + (os.getpid() % 20) * 4
    command = [sys.executable, "bench/bench_instances.py", "--tasks", "400", "--workers", "24", "--instances", "3",
               "--gunicorn-workers", "1", "--kill-every", "1", "--lease-seconds", "3", "--timeout", "240",
               "--database-url", database, "--redis-url", os.environ["REDIS_URL"], "--keep-redis",
               "--port-base", str(port_base)]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert run.returncode in (0, 1), run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["kills"] > 0  # workers died holding tasks...
    assert result["left"] == 0  # ...and none was lost
    assert result["succeeded"] == 400
    assert result["tasks_with_two_successes"] == 0
    assert result["tasks_without_a_success"] == 0
    assert (result["completed_events"], result["tasks_with_two_completed_events"]) == (400, 0)
    assert result["audit_verify_ok"], result["audit_verify"]
    assert result["ok"]
