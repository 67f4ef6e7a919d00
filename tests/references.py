"""What the code really reads and offers, for checking the deployment artifacts against it."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_CODE_DIRS = ["symphony", "accounts", "audit", "agents", "observability", "config", "clients/symphony-agent/src"]
_ENV_READ = re.compile(
    r"""(?:env_(?:str|bool|int|float|list|secret|map)|_int|os\.environ\.get|os\.getenv|environ\.get|os\.environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""
)
# Read by libraries rather than by our code: the OpenTelemetry SDK, prometheus_client, Python itself.
EXTERNAL_PREFIXES = ("OTEL_", "PYTHON")
# WEB_CONCURRENCY, GUNICORN_CMD_ARGS and PORT are also read by gunicorn itself.
EXTERNAL_NAMES = {"PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE", "TZ", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS"}


@cache
def env_names_read() -> frozenset[str]:
    """Every environment variable name our Python code reads (``NAME_FILE`` too, for env_secret)."""
    names: set[str] = set()
    for folder in _CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            if "tests" in path.parts or "migrations" in path.parts:
                continue
            text = path.read_text()
            for match in _ENV_READ.finditer(text):
                name = match.group(1) or match.group(2)
                names.add(name)
                if "env_secret(" in match.group(0):
                    names.add(f"{name}_FILE")
    # The worker spells its variables from its option table (SYMPHONY_AGENT_<OPTION>).
    from symphony_agent.config import OPTIONS

    names.update(option.env for option in OPTIONS)
    return frozenset(names)


def is_known_env(name: str) -> bool:
    return name in env_names_read() or name in EXTERNAL_NAMES or name.startswith(EXTERNAL_PREFIXES)


@cache
def management_commands() -> frozenset[str]:
    from django.core.management import get_commands

    return frozenset(get_commands())


def manage_commands_in(text: str) -> set[str]:
    """``manage.py <command>`` names mentioned in a file."""
    return set(re.findall(r"manage\.py[\"',\s]+([a-z_]+)", text))
