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


# --- a whole install under gunicorn, administered over its API -----------------------------------------


class Install:
    """A throwaway install (SQLite in ``tmp``, plus whatever ``env`` adds: ``REDIS_URL``...) served by
    gunicorn with ``workers`` workers. ``admin`` holds the headers of a super admin's key.

    gunicorn's access log goes to ``log`` with each request's worker pid and ``X-Phase`` header, so a
    test can tell which workers served a batch of requests (``workers_of``).
    """

    def __init__(self, tmp: Path, *, workers: int = 2, **env: str) -> None:
        self.tmp, self.workers, self.port = tmp, workers, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "gunicorn.log"
        self.env = app_env(
            tmp,
            SYMPHONY_RATELIMIT_DEFAULT="1000000/15m",  # these tests count answers, not limits
            LOG_LEVEL="INFO",  # gunicorn's access log (with the worker pid) logs at INFO
            GUNICORN_ACCESSLOG="-",
            PYTHONUNBUFFERED="1",  # the access log is read while the server runs
            **env,
        )
        for name in ("DATABASE_URL", "REDIS_URL", "CACHE_KEY_PREFIX"):
            if name not in env:
                self.env.pop(name, None)
        self.env = {k: v for k, v in self.env.items() if not k.startswith("OTEL_")}

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return result.stdout

    def __enter__(self) -> Install:
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("ensure_admin")
        self.admin = {"Authorization": f"Bearer {self.manage('create_api_key', 'admin', '--name', 'root').strip()}"}
        command = [*gunicorn_command(self.port, workers=self.workers)]
        command += ["--access-logformat", "pid=%(p)s phase=%({x-phase}i)s"]
        self._server = running(command, env=self.env, log=self.log)
        self.process = self._server.__enter__()
        wait_for(f"{self.url}/health/startup", timeout=60, process=self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)

    def call(self, method: str, path: str, headers: dict[str, str], json: dict | None = None, phase: str = "setup"):
        """One request on a fresh connection (``Connection: close``), so the kernel spreads them."""
        import requests

        headers = {"Connection": "close", "X-Phase": phase, **headers}
        return requests.request(method, f"{self.url}{path}", headers=headers, json=json, timeout=30)

    def burst(self, path: str, headers: dict[str, str], *, count: int, phase: str) -> list[int]:
        """``count`` GETs, four at a time (so every worker takes some); their statuses in order."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda _: self.call("GET", path, headers, phase=phase).status_code, range(count)))

    def workers_of(self, phase: str) -> dict[str, int]:
        """Requests per worker pid among those sent with ``X-Phase: phase``."""
        import re
        from collections import Counter

        return Counter(re.findall(rf"pid=<?(\d+)>? phase={re.escape(phase)}\b", self.log.read_text()))

    def user_with_key(self, username: str, roles: list[str], scopes: list[str] | None = None) -> dict[str, str]:
        """Create a user holding ``roles`` and a key for them; its headers (``_prefix``: the key's prefix)."""
        created = self.call("POST", "/api/v1/users/", self.admin, {"username": username, "roles": roles})
        assert created.status_code == 201, created.text
        body = {"name": username, "owner": username, **({"scopes": scopes} if scopes else {})}
        key = self.call("POST", "/api/v1/api-keys/", self.admin, body)
        assert key.status_code == 201, key.text
        return {"Authorization": f"Bearer {key.json()['api_key']}", "_prefix": key.json()["prefix"]}


# --- a private Redis to kill, stop and bring back ------------------------------------------------------


class RedisServer:
    """``redis-server`` on a free port of our range, no persistence. ``kill()`` it (SIGKILL) and
    ``start()`` it again on the same port, or ``stop()`` (SIGSTOP: it keeps its data and its socket
    accepts connections that are never answered) and ``cont()`` it. Never the machine's own Redis."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port = tmp, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        log = open(self.tmp / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)  # polling for the server to listen
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def cont(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
        self.kill()


class Load:
    """A steady load: ``threads`` clients sending ``GET url`` in a loop, each answer recorded as
    ``(monotonic time, status, Retry-After)``; status 0 is a connection error or a timeout."""

    def __init__(self, url: str, headers: dict[str, str], *, threads: int = 4, timeout: float = 10.0) -> None:
        import threading

        self.url, self.headers, self.timeout = url, headers, timeout
        self.answers: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        import requests

        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.get(self.url, headers=self.headers, timeout=self.timeout)
                answer = (time.monotonic(), response.status_code, response.headers.get("Retry-After"))
            except requests.RequestException:
                answer = (time.monotonic(), 0, None)
            self.answers.append(answer)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def between(self, start: float, end: float) -> list[tuple[float, int, str | None]]:
        return [answer for answer in list(self.answers) if start <= answer[0] < end]
