"""docs/DEPLOYMENT.md and docs/OPERATIONS.md name only commands, endpoints and settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests import references

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "DEPLOYMENT.md", ROOT / "docs" / "OPERATIONS.md"]
# Path prefixes the docs name (nginx locations), checked through one real path under each.
PREFIXES = {"/api/v1/agent/": "/api/v1/agent/heartbeat/"}
# Variables of the Compose file itself, not of Symphony.
COMPOSE_VARIABLES = {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "SYMPHONY_HOSTNAME", "SYMPHONY_HTTPS_PORT",
                     "SYMPHONY_HTTP_PORT", "SYMPHONY_IMAGE", "SYMPHONY_AGENT_KEY",
                     "SYMPHONY_APP_DB_PASSWORD"}  # fmt: skip


def _text() -> str:
    return "\n".join(doc.read_text() for doc in DOCS)


def test_it_names_only_management_commands_that_exist():
    named = references.manage_commands_in(_text())
    assert {"migrate", "audit_verify", "reap_tasks", "run_agent", "create_api_key"} <= named
    missing = sorted(named - references.management_commands())
    assert not missing, f"the docs name commands the code does not have: {missing}"


def test_it_names_only_endpoints_that_resolve():
    from django.urls import Resolver404, resolve

    paths = set(re.findall(r"(?<![\w.])(/(?:api/v1|health|metrics|admin)[\w/<>.-]*)", _text()))
    assert "/health/ready" in paths and "/api/v1/audit-events/" in paths
    unresolved = []
    for path in sorted(paths):
        concrete = PREFIXES.get(path) or re.sub(r"<[^>]+>", "1", path.replace("<prefix>", "0123456789ab"))
        try:
            resolve(concrete)
        except Resolver404:
            unresolved.append(path)
    assert not unresolved, f"the docs name endpoints that do not exist: {unresolved}"


def test_it_names_only_settings_the_code_reads():
    prefixes = "SYMPHONY|DB|SECURE|GUNICORN|WEB|LOG|REDIS|DATABASE|SECRET|ALLOWED|CSRF|METRICS"
    names = set(re.findall(rf"`((?:{prefixes})_?[A-Z0-9_]*)`", _text()))
    unknown = sorted(n for n in names - COMPOSE_VARIABLES if not references.is_known_env(n))
    assert not unknown, f"the docs name settings nothing reads: {unknown}"
