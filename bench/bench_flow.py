"""Flow-control benchmark: claim throughput with concurrency limits and fairness on, versus off, same run.

Service level (``task_claim`` + ``task_complete`` in threads, each with its own PostgreSQL connection), so
the figure isolates what the claim query and the limit locks cost, without HTTP. Each mode drains the same
number of tasks with the same agents:

- off: fairness off (turn 0), no concurrency keys;
- on: fairness on, 4 submitters, tasks spread over 8 concurrency keys, each limited to ``--limit`` running.

Usage::

    python bench/bench_flow.py [--tasks 2000] [--agents 8] [--limit 4]
        [--database-url postgres://postgres@127.0.0.1:5432/symphony_f_bench]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/symphony_f_bench")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--limit", type=int, default=4)
    args = parser.parse_args()
    os.environ.update(
        DATABASE_URL=args.database_url,
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="symphony.settings",
    )
    name = args.database_url.rsplit("/", 1)[1]
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection
    from django.test import override_settings

    from accounts.models import Project, User
    from agents import services
    from agents.flow_models import ConcurrencyLimit
    from agents.models import Orchestra, Task

    project = Project.objects.get(slug="default")
    owner = User.objects.create_user("bench-owner")
    submitters = [User.objects.create_user(f"bench-submitter-{i}") for i in range(4)]
    orchestra = Orchestra.objects.create(name="bench", state="running", project=project)
    agents = []
    for i in range(args.agents):
        agent, _ = services.agent_create(owner=owner, name=f"bench-agent-{i}", capabilities=[])
        orchestra.agents.add(agent)
        agents.append(agent)
    for k in range(8):
        ConcurrencyLimit.objects.create(project=project, key=f"model-{k}", max_running=args.limit)

    def fill(on: bool) -> None:
        with override_settings(SYMPHONY_TASK_FAIRNESS=on):
            for n in range(args.tasks):
                services.task_submit(
                    submitter=submitters[n % 4],
                    orchestra=orchestra,
                    kind="echo",
                    concurrency_key=f"model-{n % 8}" if on else "",
                )

    def drain() -> float:
        def work(agent) -> None:
            try:
                idle = 0
                while idle < 20:
                    tasks = services.task_claim(agent=agent, max_tasks=1)
                    if not tasks:
                        idle += 1
                        time.sleep(0.002)
                        continue
                    idle = 0
                    for task in tasks:
                        services.task_complete(task_id=task.pk, agent=agent, attempt=task.last_attempt)
            finally:
                connection.close()

        start = time.perf_counter()
        threads = [threading.Thread(target=work, args=(agent,)) for agent in agents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not Task.objects.filter(status__in=["pending", "running"]).exists()
        return time.perf_counter() - start

    results = {}
    for mode in ("off", "on", "off", "on"):  # interleaved: the machine's load changes over the run
        fill(mode == "on")
        connection.close()
        elapsed = drain()
        results.setdefault(mode, []).append(args.tasks / elapsed)
    for mode, rates in results.items():
        print(f"{mode:>3}: {' / '.join(f'{r:.0f}' for r in rates)} claims+completions/s "
              f"({args.agents} agents, {args.tasks} tasks per run)")  # fmt: skip


if __name__ == "__main__":
    main()
