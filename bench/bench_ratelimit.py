"""What the rate limiter costs an authenticated API request.

1. In-process: median latency of ``GET /api/test/whoami/`` with an API key through the Django test
   client, rate limiter on vs off (``RATELIMIT_ENABLE``), and the Redis commands per request
   sent by the process (the limiter's hot path is one ``EVAL``, i.e. one round-trip).
2. Under gunicorn (2 sync workers) with wrk on loopback: requests/s with and without the limiter.

Needs Redis (``REDIS_URL``, default redis://127.0.0.1:6379/7). Uses ``DATABASE_URL`` when set (say,
PostgreSQL), else a throwaway SQLite database. Ports: 127.0.0.1:18610.

    python bench/bench_ratelimit.py [--requests 3000] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = 18610
PY = sys.executable


def _env(var_dir: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7"),
        "CACHE_KEY_PREFIX": "bench-ratelimit",
        "SYMPHONY_VAR_DIR": var_dir,
        # A limit no benchmark reaches: we measure the counting, not the refusals.
        "SYMPHONY_RATELIMIT_DEFAULT": "1000000000/15m",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _prepare(env: dict[str, str]) -> str:
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    code = (
        "import django; django.setup()\n"
        "from accounts.models import Role, User\n"
        "from accounts.services import api_key_create\n"
        "user, _ = User.objects.get_or_create(username='bench-viewer')\n"
        "user.roles.add(Role.objects.get(name='viewer'))\n"
        "User.objects.filter(pk=user.pk).update(is_active=True)\n"
        "import uuid\n"
        "print(api_key_create(owner=user, name='bench-' + uuid.uuid4().hex[:8])[1])\n"
    )
    out = subprocess.run([PY, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def in_process(env: dict[str, str], raw_key: str, requests: int) -> dict[str, float]:
    code = f"""
import json, statistics, time, django
django.setup()
import redis
from django.conf import settings
from django.test import Client
client = Client()
headers = {{"Authorization": "Bearer {raw_key}"}}
# Count the Redis commands this process sends (other clients of the server would blur INFO stats).
sent = [0]
_execute = redis.Redis.execute_command
def counting(self, *args, **options):
    sent[0] += 1
    return _execute(self, *args, **options)
redis.Redis.execute_command = counting

def commands():
    return sent[0]

def run(enabled):
    settings.RATELIMIT_ENABLE = enabled
    for _ in range(200):  # warm up: caches, connections, the key memo
        assert client.get("/api/test/whoami/", headers=headers).status_code == 200
    before = commands()
    times = []
    for _ in range({requests}):
        t0 = time.perf_counter()
        client.get("/api/test/whoami/", headers=headers)
        times.append(time.perf_counter() - t0)
    per_request = (commands() - before) / {requests}
    return statistics.median(times) * 1e6, per_request

results = {{}}
for round_ in range(2):  # interleave to even out drift
    for enabled in (False, True):
        median, cmds = run(enabled)
        results.setdefault(enabled, []).append((median, cmds))
off = min(m for m, _ in results[False]); on = min(m for m, _ in results[True])
print(json.dumps({{"median_off_us": off, "median_on_us": on, "added_us": on - off,
    "redis_cmds_off": results[False][-1][1], "redis_cmds_on": results[True][-1][1]}}))
"""
    out = subprocess.run([PY, "-c", code], cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _gunicorn(env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PY, "-m", "gunicorn", "symphony.wsgi", "--bind", f"127.0.0.1:{PORT}", "-w", "2", "-k", "sync",
         "--worker-tmp-dir", "/dev/shm", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health/live", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("gunicorn did not start")


def _wrk(raw_key: str, duration: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{duration}s", "-H", f"Authorization: Bearer {raw_key}",
         f"http://127.0.0.1:{PORT}/api/test/whoami/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def under_gunicorn(env: dict[str, str], raw_key: str, duration: int) -> dict[str, float]:
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):  # alternate on/off twice, keep the best of each
        for enabled in (False, True):
            proc = _gunicorn({**env, "SYMPHONY_RATELIMIT_ENABLED": "true" if enabled else "false"})
            try:
                _wrk(raw_key, 2)  # warm up
                results[enabled].append(_wrk(raw_key, duration))
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
    off, on = max(results[False]), max(results[True])
    return {"rps_off": off, "rps_on": on, "ratio_on_off": on / off}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as var_dir:
        env = _env(var_dir)
        raw_key = _prepare(env)
        figures = {"database": "postgresql" if os.environ.get("DATABASE_URL") else "sqlite"}
        figures |= in_process(env, raw_key, args.requests)
        figures |= under_gunicorn(env, raw_key, args.duration)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
