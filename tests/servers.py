"""Start real servers (gunicorn, nginx, a private PostgreSQL cluster, a chat completion stub) on
loopback for the tests, and always stop them."""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


class ChatCompletionsStub:
    """An OpenAI-compatible chat completion server on loopback, for the worker's example handler.

    ``POST /v1/chat/completions`` with ``stream: true`` answers ``tokens`` as server-sent events over
    chunked transfer encoding, as vLLM and Ollama do: one ``chat.completion.chunk`` per token, a last
    chunk with ``finish_reason``, a usage chunk when ``stream_options.include_usage`` asks for it, then
    ``data: [DONE]``. With ``hold`` set, it sends the first token, then waits for ``release``. ``status``
    other than 200 answers that status with an OpenAI error object instead. ``requests`` keeps each
    request's headers and JSON body; ``disconnected`` is set when a client hung up mid-answer.
    """

    def __init__(self, tokens: tuple[str, ...] = ("Hello", ",", " wor", "ld", "!"), *, status: int = 200) -> None:
        self.tokens = tokens
        self.status = status
        self.hold = False
        self.release = threading.Event()
        self.disconnected = threading.Event()
        self.requests: list[dict] = []
        self.usage = {"prompt_tokens": 11, "completion_tokens": len(tokens), "total_tokens": 11 + len(tokens)}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})
                if stub.status != 200:
                    return self._json(stub.status, {"error": {"message": "stub refuses", "type": "server_error"}})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    self._stream(body)
                except (BrokenPipeError, ConnectionResetError):
                    stub.disconnected.set()

            def _stream(self, body: dict) -> None:
                def chunk(delta: dict, finish: str | None = None, **extra: object) -> dict:
                    choice = {"index": 0, "delta": delta, "finish_reason": finish}
                    return {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
                            "model": body.get("model"), "choices": [choice], **extra}  # fmt: skip

                for i, token in enumerate(stub.tokens):
                    self._event(chunk({"role": "assistant", "content": token} if i == 0 else {"content": token}))
                    if i == 0 and stub.hold:
                        stub.release.wait(30)
                    time.sleep(0.01 if stub.hold else 0)  # paced after a hold: a hung-up client gets noticed
                self._event(chunk({}, "stop"))
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._event({**chunk({}), "choices": [], "usage": stub.usage})
                self._send(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _event(self, data: dict) -> None:
                self._send(b"data: " + json.dumps(data).encode() + b"\n\n")

            def _send(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(self, status: int, data: dict) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="chat-stub", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> ChatCompletionsStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def tcp_relay(port: int, target: int):
    """Relay 127.0.0.1:``port`` to 127.0.0.1:``target`` while the block runs: a server that comes up."""
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, name="tcp-relay", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()


# --- a private PostgreSQL cluster ------------------------------------------------------------------
# Outage tests stop and freeze a database: never the machine's own (127.0.0.1:5432), always one of these.


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``, else None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0))
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _process_state(pid: int) -> str | None:
    """The state letter of ``/proc/<pid>/stat`` (``T``: stopped), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a spare loopback port, trust authentication, user ``postgres``.

    ``stop()``/``start()`` make an outage (connections refused); ``freeze()``/``thaw()`` SIGSTOP and
    SIGCONT the postmaster and every backend: the server then accepts TCP connections (the kernel
    answers) but never replies, as a hung host or a network blackhole would. As root, the server runs
    as the ``postgres`` user (initdb refuses root).
    """

    def __init__(self, bin_dir: Path, port: int) -> None:
        self.bin_dir, self.port = bin_dir, port
        self.root = Path(tempfile.mkdtemp(prefix="symphony-pg-"))
        self.data = self.root / "data"
        self.frozen: list[int] = []
        self._thaw_timer: threading.Timer | None = None
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> PostgresCluster:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            # Small and fast: fsync off (nothing here must survive a crash), few connections.
            conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
            conf.write("max_connections = 40\nshared_buffers = 16MB\n")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: sessions are terminated, new connections refused."""
        self.thaw()
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def children(self, postmaster: int) -> list[int]:
        """Every process the postmaster started (backends, checkpointer, walwriter, ...)."""
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(Path(stat).parent.name))
        return children

    def freeze(self, *, at_most: float = 90.0) -> None:
        """SIGSTOP the postmaster, wait until it has stopped (so it starts no new backend), then its
        children: listed after the stop, so a backend forked meanwhile (a client connecting) cannot
        escape and keep serving a "frozen" database.

        Thawed by itself after ``at_most`` seconds, so a client that fails to give up makes its test
        fail instead of hanging the whole run."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return
        with suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGSTOP)
            self.frozen.append(postmaster)
        deadline = time.monotonic() + 10
        while _process_state(postmaster) not in {"T", "t", None} and time.monotonic() < deadline:
            time.sleep(0.001)  # a signal is delivered when the process next runs, not by kill()
        for pid in self.children(postmaster):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                self.frozen.append(pid)
        for pid in self.frozen:  # stopped when this returns, not some time after
            while _process_state(pid) not in {"T", "t", None} and time.monotonic() < deadline:
                time.sleep(0.001)
        self._thaw_timer = threading.Timer(at_most, self.thaw)
        self._thaw_timer.daemon = True
        self._thaw_timer.start()

    def thaw(self) -> None:
        if self._thaw_timer is not None:
            self._thaw_timer.cancel()
            self._thaw_timer = None
        for pid in reversed(self.frozen):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def ensure_up(self) -> None:
        """Thawed and running, whatever the previous test did to it."""
        self.thaw()
        if not self.is_running():
            self.start()

    def url(self, dbname: str = "postgres", user: str = "postgres", password: str = "") -> str:
        """A ``DATABASE_URL``. Authentication is ``trust``: a password is sent only if asked for, so a
        test may put a known secret in the URL and check that no log line ever shows it."""
        credentials = f"{user}:{password}" if password else user
        return f"postgres://{credentials}@127.0.0.1:{self.port}/{dbname}"

    def clone(self, template: str, dbname: str) -> str:
        """A new database copied from ``template`` (no one may be connected to it); returns its URL."""
        self.psql(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
        return self.url(dbname)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        result = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            dbname,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        )
        return result.stdout.strip()

    def createdb(self, dbname: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", dbname)
        return self.url(dbname)

    def destroy(self) -> None:
        self.thaw()
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PostgresCluster]:
    """Start a private cluster on a free port of our range; always thaw, stop and delete it."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql")
    cluster = PostgresCluster(bin_dir, free_port()).init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@contextmanager
def private_redis(*, password: str = "") -> Iterator[tuple[subprocess.Popen, int]]:
    """A throwaway ``redis-server`` on a free port of our range (optionally with ``requirepass``);
    yields ``(process, port)`` and always kills it. Killing the process makes a Redis outage."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if password:
        command += ["--requirepass", password]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)  # polling for the server to listen
        yield process, port
    finally:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def gunicorn_app(env: dict[str, str], log: Path, *, workers: int = 2) -> Iterator[str]:
    """Symphony under real gunicorn (config/gunicorn.conf.py, sync workers) with ``env``; yields its
    base URL once ``/health/startup`` answers 200. The output (stdout and stderr) goes to ``log``."""
    port = free_port()
    with running(gunicorn_command(port, workers=workers), env=env, log=log) as process:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while wait_for(f"{url}/health/startup", timeout=60, process=process) != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"gunicorn did not boot: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url


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
        """Start it (again, after ``kill()``, on the same port). The first start moves to another
        port when this one was taken meanwhile (by another xdist worker's server: nothing holds a
        port between ``free_port()`` and the bind); a restart cannot, and says so."""
        for attempt in range(1 if self.process is not None else 5):
            if attempt:
                self.port = free_port()
                self.url = f"redis://127.0.0.1:{self.port}/0"
            if self._start():
                return self
        raise RuntimeError(f"redis-server could not listen on {self.port} (see its log in {self.tmp})")

    def _start(self) -> bool:
        """Whether our redis-server, and not another process, listens on ``self.port``."""
        import redis

        log = open(self.tmp / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                pid = redis.Redis(port=self.port, socket_timeout=1).info("server")["process_id"]
            except redis.RedisError:
                time.sleep(0.05)  # polling for the server to listen
                continue
            if pid == self.process.pid:
                return True
            break  # someone else's server on our port: ours will fail to bind
        self.kill()
        return False

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


class WebhookReceiver:
    """A real HTTP receiver on 127.0.0.1 (its own thread) that records every request.

    ``script`` is a list of answers used in turn, then the last one forever: an int (status), or
    ``("sleep", seconds, status)`` to answer late (a timeout for the sender), or ``("redirect", url)``.
    """

    def __init__(self, script: list[Any] | None = None) -> None:
        import http.server
        import threading

        self.script: list[Any] = list(script or [200])
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                    answer = receiver.script.pop(0) if len(receiver.script) > 1 else receiver.script[0]
                if isinstance(answer, tuple) and answer[0] == "sleep":
                    time.sleep(answer[1])
                    answer = answer[2]
                if isinstance(answer, tuple) and answer[0] == "redirect":
                    self.send_response(307)
                    self.send_header("Location", answer[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = f"status {answer}".encode()
                try:
                    self.send_response(answer)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up (timeout) and closed the connection

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
