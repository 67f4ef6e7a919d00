"""Seed the benchmark database; print one JSON line with the keys bench/run.py needs.

Run by bench/run.py with the benchmark's environment (DATABASE_URL=.../symphony_bench). Idempotent:
a second run reuses the user and agents and mints fresh keys (raw keys are never stored).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")

import django

django.setup()

from django.apps import apps  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from accounts.models import Role  # noqa: E402
from accounts.services import api_key_create  # noqa: E402


def seed_user() -> str:
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"email": "bench@example.invalid"})
    user.roles.add(Role.objects.get(name="super_admin"))
    _, raw = api_key_create(owner=user, name=f"bench-{os.getpid()}")
    return raw


def seed_agents(count: int) -> tuple[int, list[str], list[str]]:
    """Up to ``count`` agents with agent-bound keys, through the agents app's own services."""
    notes: list[str] = []
    models = {m._meta.model_name for m in apps.get_app_config("agents").get_models()}
    if "agent" not in models:
        return 0, [], ["agents app has no Agent model on this branch"]
    from bench import seed_agents as agents_seed

    created, keys = agents_seed.seed(count)
    return created, keys, notes


def main() -> None:
    count = int(os.environ.get("BENCH_AGENTS", "50"))
    user_key = seed_user()
    try:
        agents, agent_keys, notes = seed_agents(count)
    except Exception as exc:  # noqa: BLE001 - report, don't abort the whole benchmark
        agents, agent_keys, notes = 0, [], [f"agent seeding failed: {exc!r}"]
    print(json.dumps({"user_key": user_key, "agents": agents, "agent_keys": agent_keys, "notes": notes}))


if __name__ == "__main__":
    main()
