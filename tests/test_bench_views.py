"""The benchmark's baseline view exists only when SYMPHONY_BENCH_VIEWS is on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import django; django.setup();from django.test import Client; print(Client().get('/bench/constant').status_code)"
)


def _status(**env: str) -> str:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "symphony.settings", "ALLOWED_HOSTS": "testserver", **env}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_it_does_not_serve_the_bench_view_by_default():
    assert _status(SYMPHONY_BENCH_VIEWS="false") == "404"


def test_it_serves_a_constant_when_bench_views_are_on():
    assert _status(SYMPHONY_BENCH_VIEWS="true") == "200"
