"""Start real servers (gunicorn, nginx) on loopback for the artifact tests, and always stop them."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "config" / "gunicorn.conf.py"
PORT_RANGE = range(18500, 18600)  # this project's ports for tests and benchmarks


def free_port() -> int:
    """A free port in our range (random start, so parallel xdist workers rarely collide)."""
    ports = list(PORT_RANGE)
    random.shuffle(ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18500-18599")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports. Two calls of ``free_port()`` can return the same port, since
    nothing holds it in between; nginx then merges two ``listen`` blocks and ``nginx -t`` fails."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_for(url: str, *, timeout: float = 20.0, context=None, process: subprocess.Popen | None = None) -> int:
    """Poll ``url`` until it answers (any HTTP status); return the status. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - our http(s) URL
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError) as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def app_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Production-like settings for a throwaway server: DEBUG off, a random key, private var dir."""
    env = dict(os.environ)
    multiproc = tmp / "prometheus"
    multiproc.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": os.urandom(32).hex(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SYMPHONY_VAR_DIR": str(tmp / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "LOG_FORMAT": "json",
            "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
        }
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra)
    return env


def gunicorn_command(port: int, *, workers: int = 1, worker_class: str = "sync") -> list[str]:
    command = [sys.executable, "-m", "gunicorn", "symphony.wsgi", "--bind", f"127.0.0.1:{port}"]
    if GUNICORN_CONF.exists():
        command += ["--config", str(GUNICORN_CONF)]
    # Command-line flags win over the config file.
    return [*command, "--workers", str(workers), "--worker-class", worker_class, "--worker-tmp-dir", "/dev/shm"]


@contextmanager
def running(command: list[str], *, env: dict[str, str] | None = None, log: Path, cwd: Path = ROOT):
    """Run ``command`` in its own process group; on exit, SIGTERM the group, then SIGKILL."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
