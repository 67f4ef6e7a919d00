"""``manage.py seed_demo [--submit N]``: the demo fleet of ``make run``, created once.

A running orchestra "demo" with two agents able to run the demo handlers (echo, word_count, sleep), and
a "demo" user (operator role) whose key submits tasks. The raw keys are written to
``var/demo_agents.json`` (mode 0600) when they are created, and only then; if that file is gone, the
keys are reissued (the old ones revoked) so the demo can start again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

import audit
from accounts.services import api_key_create, api_key_revoke
from agents import services
from agents.models import Agent, Orchestra

DEMO_CAPABILITIES = ["echo", "sleep", "word_count"]
DEMO_AGENTS = ["demo-agent-1", "demo-agent-2"]
DEMO_TASKS = [
    ("echo", {"message": "hello from the demo"}),
    ("word_count", {"text": "Symphony dispatches tasks to a fleet of agents."}),
    ("sleep", {"seconds": 3}),
]


def demo_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_agents.json"


class Command(BaseCommand):
    help = "Create the demo orchestra, two demo agents and a submitter key (once); optionally submit tasks."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--submit", type=int, default=0, help="Also submit this many demo tasks.")

    def handle(self, *args: Any, submit: int, **options: Any) -> None:
        path = demo_file()
        secrets = self.seed(write_keys=not path.exists())
        if secrets:
            _write_private(path, secrets)
            self.stdout.write(f"Demo keys written to {path} (mode 0600); they are not shown again.")
        else:
            self.stdout.write(f"Demo fleet already seeded; keys in {path}.")
        if submit:
            self.submit(submit)

    @transaction.atomic
    def seed(self, *, write_keys: bool) -> dict[str, Any] | None:
        from accounts.models import Role

        user, created = get_user_model().objects.get_or_create(username="demo", defaults={"email": ""})
        if created:  # an API-only account: nobody logs in as demo
            user.set_unusable_password()
            user.save(update_fields=["password"])
            audit.record("user.created", resource=user, details={"username": "demo", "via": "seed_demo"})
        user.roles.add(*Role.objects.filter(name="operator"))
        orchestra = Orchestra.objects.filter(name="demo").first()
        if orchestra is None:
            orchestra = services.orchestra_create(
                actor=user, name="demo", description="The make-run demo: echo, word_count and sleep tasks."
            )
        if orchestra.state != Orchestra.State.RUNNING:
            services.orchestra_transition(
                orchestra=orchestra, actor=user, action="resume" if orchestra.state == "paused" else "start"
            )
        agents_out = []
        for name in DEMO_AGENTS:
            agent = Agent.objects.filter(name=name).first()
            if agent is None:
                agent, raw = services.agent_create(owner=user, name=name, capabilities=DEMO_CAPABILITIES)
            elif write_keys:
                raw = services.agent_key_reissue(agent=agent, actor=user)
            else:
                raw = None
            services.orchestra_add_agents(orchestra=orchestra, actor=user, agents=[agent])
            agents_out.append({"id": agent.pk, "name": name, "key": raw})
        if not write_keys:
            return None
        from accounts.models import ApiKey

        for old in ApiKey.objects.filter(owner=user, name="demo-submit", revoked_at__isnull=True):
            api_key_revoke(actor=user, key=old)
        _, submit_key = api_key_create(owner=user, name="demo-submit", scopes=["agent:execute", "agent:read"])
        return {"orchestra": orchestra.pk, "agents": agents_out, "submit_key": submit_key}

    def submit(self, count: int) -> None:
        user = get_user_model().objects.get(username="demo")
        orchestra = Orchestra.objects.get(name="demo")
        for i in range(count):
            kind, payload = DEMO_TASKS[i % len(DEMO_TASKS)]
            services.task_submit(
                submitter=user, orchestra=orchestra, kind=kind, input=payload, required_capabilities=[kind]
            )
        self.stdout.write(f"Submitted {count} demo task(s) to orchestra 'demo' (id {orchestra.pk}).")


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
