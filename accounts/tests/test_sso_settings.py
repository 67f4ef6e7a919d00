"""Single sign-on settings are checked when Symphony starts, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BASE = {"DEBUG": "true", "SYMPHONY_OIDC_CLIENT_ID": "symphony"}


def start(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYMPHONY_OIDC")}
    return subprocess.run(
        [sys.executable, "-c", "import symphony.settings"],
        env={**clean, **BASE, **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SYMPHONY_OIDC_ISSUER": "https://id.example.com", "SYMPHONY_OIDC_ROLE_MAP": "admins=admin,oops"}, "'oops'"),
        ({"SYMPHONY_OIDC_ISSUER": "http://id.example.com"}, "https://"),
        ({"SYMPHONY_OIDC_ONLY": "true"}, "SYMPHONY_OIDC_ONLY"),
        ({"SYMPHONY_OIDC_ISSUER": "https://id.example.com", "SYMPHONY_OIDC_CLIENT_ID": ""}, "CLIENT_ID"),
        ({"SYMPHONY_OIDC_ISSUER": "https://id.example.com", "SYMPHONY_OIDC_SIGN_ALGO": "HS256"}, "SIGN_ALGO"),
    ],
)
def test_it_refuses_to_start_with_a_bad_sso_setting(env, named):
    result = start(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr


def test_it_starts_with_a_loopback_provider_and_a_project_mapping():
    result = start(SYMPHONY_OIDC_ISSUER="http://127.0.0.1:9000/o", SYMPHONY_OIDC_ROLE_MAP="ml=developer@alpha")
    assert result.returncode == 0, result.stderr
