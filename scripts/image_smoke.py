"""`make image-test`, after `scripts/image.sh` built the image: run it the way Compose and the chart do.

The container settings come from docker-compose.yml itself (read-only root, its tmpfs mounts, dropped
capabilities, no-new-privileges, the stop grace period, the environment), so what is tested is what
ships; tests/test_compose.py checks that the chart uses the same ones. Against a throw-away PostgreSQL
database (and a Redis key prefix of its own), in this order:

1. the image itself: non-root USER, tini ENTRYPOINT, a HEALTHCHECK, no compiler, no build leftovers, no
   secret in its history, configuration or files, every requirements.txt pin installed;
2. ``manage.py migrate`` in a container, then ``seed_demo`` for an agent key and a submitter key;
3. the web container: ``/health/ready`` 200 (timed from ``run``), static files, ``/metrics`` summed
   across workers, the image's HEALTHCHECK, uid 10001 everywhere, PID 1 tini, a read-only root;
4. ``run_agent`` from the image (Compose's command) claims and completes a task submitted over HTTP;
5. SIGTERM: both containers exit 0 within their grace period; no error line in either log.

Exit status 0 when every check passed. Needs PyYAML, psycopg, redis and cryptography (the project's venv
has them).
Variables: IMAGE_TEST_DATABASE_URL (an existing database on the server to create the throw-away one
from, default postgres://postgres@127.0.0.1:5432/postgres), IMAGE_TEST_REDIS_URL (default
redis://127.0.0.1:6379/15; empty: the in-process cache), IMAGE_TEST_KEEP=1 (leave containers and the
database for a post-mortem).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
UID = 10001
# Inside the image, in one python process: what must not be there. Prints a JSON list of problems.
IMAGE_AUDIT = r"""
import json, os, re, shutil, subprocess
problems = []
for tool in ("gcc", "cc", "c++", "g++", "cpp", "make", "ld", "as", "pg_config", "git", "curl", "wget"):
    if shutil.which(tool):
        problems.append(f"{tool} is on PATH: {shutil.which(tool)}")
packages = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True, text=True).stdout.split()
for name in packages:
    compiler = re.fullmatch(r"(gcc|g\+\+|cpp|clang|binutils)(-[0-9]+)?", name)
    if name == "build-essential" or name.endswith("-dev") or compiler:
        problems.append(f"build package installed: {name}")
for path in ("/wheels", "/build", "/root/.cache", "/app/.cache", "/tmp/symphony-build"):
    if os.path.exists(path):
        problems.append(f"build leftover: {path}")
if os.path.isdir("/var/lib/apt/lists") and set(os.listdir("/var/lib/apt/lists")) - {"partial", "lock"}:
    problems.append("apt lists left in /var/lib/apt/lists")
for name in (".git", ".venv", ".cache", "tests", "conftest.py", "secrets", ".env", "Dockerfile.production",
             "docker-compose.yml", "helm", "bench", ".ci"):
    if os.path.lexists(f"/app/{name}"):
        problems.append(f"/app/{name} is in the image (.dockerignore)")
if os.listdir("/app/var"):
    problems.append(f"/app/var is not empty: {os.listdir('/app/var')}")
# The collectstatic stage's key looks like this; none of its output may hold it.
key = re.compile(rb"build-only-[0-9a-f]{64}")
for folder, dirs, files in os.walk("/app"):
    for name in files:
        path = os.path.join(folder, name)
        if not os.path.islink(path):
            with open(path, "rb") as handle:
                if key.search(handle.read()):
                    problems.append(f"the build-time key is in {path}")
# What pip installed is what requirements.txt pins (a stale cached layer would show here).
from importlib import metadata
for line in open("/app/requirements.txt"):
    requirement = line.split("#")[0].strip()
    if not requirement or requirement.startswith("-"):
        continue
    name, _, pinned = requirement.partition("==")
    name = name.split("[")[0].strip()
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        problems.append(f"{name} (requirements.txt) is not installed")
        continue
    if pinned and installed != pinned.strip():
        problems.append(f"{name} {installed} is installed, requirements.txt pins {pinned}")
print(json.dumps(problems))
"""
# Inside the running web container: who runs what, and whether the root filesystem takes writes.
PROCESS_AUDIT = r"""
import json, os, sys
procs = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in line)
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
    except OSError:
        continue
    procs[pid] = {"comm": status["Name"], "uid": status["Uid"].split(), "cmdline": cmdline}
try:
    open("/app/written-at-runtime", "w").close()
    root_writable = True
except OSError as exc:
    root_writable = exc.errno != 30
writable = {p: os.access(p, os.W_OK) for p in sys.argv[1:]}
print(json.dumps({"procs": procs, "root_writable": root_writable, "writable": writable, "uid": os.getuid()}))
"""


class Failed(Exception):
    pass


class Smoke:
    def __init__(self, engine: str, image: str) -> None:
        self.engine = engine
        self.image = image
        self.compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        self.tag = f"symphony-smoke-{os.getpid()}"
        self.tmp = Path(tempfile.mkdtemp(prefix="symphony-smoke-"))
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.secret_files: dict[str, Path] = {}
        self.database: str | None = None
        self.admin_url = os.environ.get("IMAGE_TEST_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
        self.redis_url = os.environ.get("IMAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
        self.cache_prefix = f"smoke{os.getpid()}{secrets.token_hex(3)}"
        self.figures: dict[str, str] = {}
        self.passed = 0

    # ---- plumbing ------------------------------------------------------------------------------

    def run(self, *args: str, check: bool = True, timeout: float = 300, env: dict | None = None):
        result = subprocess.run(  # noqa: S603 - the engine, with arguments this script builds
            [self.engine, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
        if check and result.returncode != 0:
            output = (result.stdout + result.stderr)[-3000:]
            raise Failed(f"{self.engine} {' '.join(args[:3])}... exited {result.returncode}:\n{output}")
        return result

    def ok(self, what: str, detail: str = "") -> None:
        self.passed += 1
        print(f"  ok  {what}{f'  ({detail})' if detail else ''}", flush=True)

    def expect(self, condition: bool, what: str, detail: str = "") -> None:
        if not condition:
            raise Failed(f"{what}: {detail}")
        self.ok(what)

    def service(self, name: str) -> dict:
        return self.compose["services"][name]

    def interpolate(self, value: str) -> str:
        """Compose's ${NAME:-default} / ${NAME:?message}, as Compose would with none of them set."""

        def one(match: re.Match) -> str:
            name, op, default = match.group(1), match.group(2), match.group(3) or ""
            if os.environ.get(name):
                return os.environ[name]
            return default if op == ":-" else ""

        return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, str(value))

    def container_flags(self, service: str, *, var_mount: Path | None = None) -> list[str]:
        """Compose's security and filesystem settings for ``service``, as engine flags."""
        spec = self.service(service)
        flags = ["--network", "host"]  # PostgreSQL and Redis listen on the host's loopback
        if self.engine == "podman":
            # podman would time the image's HEALTHCHECK with systemd (absent here); check_web runs it.
            flags.append("--no-healthcheck")
        if spec.get("read_only"):
            flags.append("--read-only")
            if self.engine == "podman":  # podman would add tmpfs on /run, /tmp and /var/tmp by itself
                flags.append("--read-only-tmpfs=false")
        for mount in spec.get("tmpfs", []):
            target = mount.split(":", 1)[0]
            if var_mount and target == "/app/var":
                flags += ["--volume", f"{var_mount}:/app/var"]
                continue
            if self.engine == "podman":
                # Docker's tmpfs starts empty. podman's copies the image's folder in first, so /tmp/prometheus
                # inside the /tmp tmpfs comes back 1755 (the umask) and its own tmpfs takes that mode: root's,
                # closed to uid 10001. notmpcopyup gives Docker's behaviour, which Compose is written for.
                mount += ",notmpcopyup" if ":" in mount else ":notmpcopyup"
            flags += ["--tmpfs", mount]
        for cap in spec.get("cap_drop", []):
            flags += ["--cap-drop", cap]
        for opt in spec.get("security_opt", []):
            flags += ["--security-opt", opt]
        for volume in spec.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                flags += ["--volume", f"{ROOT / source}:{target}:ro"]
            else:  # a named volume, made new for this run: it starts with the image folder's owner
                name = f"{self.tag}-{source}"
                if name not in self.volumes:
                    self.run("volume", "create", name)
                    self.volumes.append(name)
                flags += ["--volume", f"{name}:{target}"]
        for secret in spec.get("secrets", []):
            flags += ["--volume", f"{self.secret_files[secret]}:/run/secrets/{secret}:ro"]
        return flags

    def environment(self, service: str, **extra: str) -> dict[str, str]:
        env = {k: self.interpolate(v) for k, v in self.service(service).get("environment", {}).items()}
        env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
        env.update(
            DATABASE_URL=self.database_url,
            CACHE_KEY_PREFIX=self.cache_prefix,
            # No collector here: the chart's setting when otel.enabled is false.
            OTEL_SDK_DISABLED="true",
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        else:
            env.pop("REDIS_URL", None)
        env.update(extra)
        return env

    def env_flags(self, env: dict[str, str], *, from_process: tuple[str, ...] = ()) -> list[str]:
        flags = []
        for name, value in env.items():
            flags += ["--env", name if name in from_process else f"{name}={value}"]
        return flags

    def one_off(self, service: str, command: list[str], *, var_mount: Path | None = None, timeout: float = 300):
        env = self.environment(service)
        return self.run(
            "run", "--rm", "--name", f"{self.tag}-{command[2] if len(command) > 2 else command[0]}",
            *self.container_flags(service, var_mount=var_mount), *self.env_flags(env), self.image, *command,
            timeout=timeout,
        )  # fmt: skip

    def http(self, path: str, *, method: str = "GET", body: Any = None, key: str | None = None,
             headers: dict | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:  # fmt: skip
        url = f"{self.base_url}{path}"
        request = urllib.request.Request(url, method=method, headers=dict(headers or {}))  # noqa: S310 - http://
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own test server
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    # ---- setup and teardown ----------------------------------------------------------------------

    def setup(self) -> None:
        import psycopg

        name = f"symphony_smoke_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.database = name
        self.database_url = re.sub(r"/[^/]*$", f"/{name}", self.admin_url)
        # Compose's secrets, made as docs/DEPLOYMENT.md says, readable by the app user only.
        self.secret = secrets.token_urlsafe(50)
        for secret, spec in self.compose.get("secrets", {}).items():
            path = self.tmp / Path(spec["file"]).name
            if path.suffix == ".pem":  # what `openssl genpkey -algorithm ed25519` writes
                path.write_bytes(self.signing_key_pem())
            else:
                path.write_text(self.secret)
            os.chmod(path, 0o400)
            os.chown(path, UID, UID)
            self.secret_files[secret] = path
        self.ok("throw-away database and secrets", f"{name}; {', '.join(self.secret_files)}")

    @staticmethod
    def signing_key_pem() -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def teardown(self) -> None:
        if os.environ.get("IMAGE_TEST_KEEP") == "1":
            print(f"IMAGE_TEST_KEEP=1: left containers {self.containers}, database {self.database}, {self.tmp}")
            return
        for name in self.containers:
            self.run("rm", "--force", *(["--time", "0"] if self.engine == "podman" else []), name, check=False)
        for name in self.volumes:
            self.run("volume", "rm", "--force", name, check=False)
        if self.database:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if self.redis_url:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(f"{self.cache_prefix}:*"))
            if keys:
                client.delete(*keys)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- 1. the image ----------------------------------------------------------------------------

    def check_image(self) -> None:
        [config] = json.loads(self.run("image", "inspect", self.image).stdout)
        cfg = config.get("Config", {})
        size = int(config.get("Size", 0))
        base = cfg.get("Labels", {}).get("org.opencontainers.image.base.name", "")
        self.figures["image size"] = f"{size / 1e6:.0f} MB"
        base_size = self.run("image", "inspect", "--format", "{{.Size}}", base, check=False).stdout.strip()
        if base and base_size.isdigit():
            added = (size - int(base_size)) / 1e6
            self.figures["image size"] += f" (base {base}: {int(base_size) / 1e6:.0f} MB, +{added:.0f} MB)"
        user = cfg.get("User", "")
        self.expect(user.split(":")[0] not in ("", "0", "root"), "the image runs as a non-root USER", user)
        entrypoint = cfg.get("Entrypoint") or [""]
        self.expect(entrypoint[0].endswith("/tini"), "ENTRYPOINT is tini", str(entrypoint))
        health = cfg.get("Healthcheck") or config.get("Healthcheck") or {}
        test = " ".join(health.get("Test") or [])
        self.expect("/health/live" in test, "the image keeps its HEALTHCHECK", str(health))
        self.healthcheck = health["Test"]
        env = cfg.get("Env") or []
        leaked = [e for e in env if re.match(r"(SECRET_KEY|.*PASSWORD|.*TOKEN)=", e)]
        self.expect(not leaked, "no secret in the image's environment", str(leaked))
        history = self.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", self.image).stdout
        # The collectstatic RUN (with its build-only key) belongs to a stage that is not in this history.
        suspicious = [
            line for line in history.splitlines()
            if re.search(r"SECRET_KEY=|build-only-|PASSWORD=|sym_[a-z0-9]{4,}_|BEGIN [A-Z ]*PRIVATE KEY", line)
        ]  # fmt: skip
        self.expect(not suspicious, "no secret in the image history", "\n".join(suspicious))
        audit = self.run(
            "run", "--rm", "--network", "none", "--read-only", "--entrypoint", "python", self.image, "-c", IMAGE_AUDIT
        )
        problems = json.loads(audit.stdout.strip().splitlines()[-1])
        self.expect(not problems, "no compiler, build package or leftover in the image; requirements.txt installed",
                    "\n".join(problems))  # fmt: skip

    # ---- 2. migrate and seed ---------------------------------------------------------------------

    def migrate_and_seed(self) -> None:
        started = time.monotonic()
        migrate = self.service("migrate")["command"]
        result = self.one_off("migrate", migrate)
        self.figures["migrate"] = f"{time.monotonic() - started:.1f} s"
        self.expect("Applying" in result.stdout, "migrate ran in a read-only container", result.stdout[-500:])
        self.one_off("migrate", ["python", "manage.py", "migrate", "--check"])
        self.ok("migrate --check: nothing left to apply")
        var = self.tmp / "var"
        var.mkdir(mode=0o700)
        os.chown(var, UID, UID)
        self.one_off("migrate", ["python", "manage.py", "seed_demo"], var_mount=var)
        self.demo = json.loads((var / "demo_agents.json").read_text())
        self.expect(bool(self.demo["agents"][0]["key"] and self.demo["submit_key"]), "seed_demo issued the keys")

    # ---- 3. the web container --------------------------------------------------------------------

    def start_web(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = self.environment("symphony", PORT=str(self.port), WEB_CONCURRENCY="2")
        self.web = f"{self.tag}-web"
        started = time.monotonic()
        self.run("run", "--detach", "--name", self.web, *self.container_flags("symphony"), *self.env_flags(env),
                 self.image)  # fmt: skip
        self.containers.append(self.web)
        status, body = 0, b""
        while time.monotonic() - started < 60:
            try:
                status, _, body = self.http("/health/ready", timeout=2)
            except OSError:
                status = 0
            if status == 200:
                break
            if self.run("inspect", "--format", "{{.State.Running}}", self.web).stdout.strip() != "true":
                raise Failed(f"the web container stopped:\n{self.logs(self.web)[-3000:]}")
            time.sleep(0.1)  # polling for the server to come up
        ready = time.monotonic() - started
        self.figures["run -> /health/ready"] = f"{ready:.1f} s"
        self.expect(status == 200, "/health/ready answers 200", f"{status} {body[:300]!r}")

    def check_web(self) -> None:
        status, _, body = self.http("/health")
        report = json.loads(body)
        self.expect(status == 200 and report["status"] == "healthy", "/health: every component healthy",
                    json.dumps(report)[:800])  # fmt: skip
        status, _, body = self.http("/admin/login/")
        links = re.findall(rb'href="(/static/[^"]+\.css)"', body)
        self.expect(status == 200 and bool(links), "the admin login page renders, linking hashed static files")
        status, headers, _ = self.http(links[0].decode(), headers={"Accept-Encoding": "gzip"})
        headers = {k.lower(): v for k, v in headers.items()}
        self.expect(
            status == 200 and headers.get("content-type", "").startswith("text/css")
            and headers.get("content-encoding") == "gzip" and "immutable" in headers.get("cache-control", ""),
            "static files are served compressed and cacheable by whitenoise",
            f"{status} {headers}",
        )  # fmt: skip
        status, _, _ = self.http("/static/admin/css/not-there.css")
        self.expect(status == 404, "a missing static file is a 404", str(status))
        env = self.environment("symphony")
        folders = [m.split(":", 1)[0] for m in self.service("symphony").get("tmpfs", [])]
        folders += [env["SYMPHONY_AUDIT_CHECKPOINT_DIR"]] if env.get("SYMPHONY_AUDIT_CHECKPOINT_DIR") else []
        audit = json.loads(self.run("exec", self.web, "python", "-c", PROCESS_AUDIT, *folders).stdout)
        procs = audit["procs"]
        self.expect(procs.get("1", {}).get("comm") == "tini", "PID 1 is tini", json.dumps(procs.get("1")))
        gunicorns = [p for p in procs.values() if p["comm"] == "gunicorn"]
        self.expect(len(gunicorns) == 3, "tini runs the gunicorn master and its 2 workers",
                    json.dumps(procs)[:600])  # fmt: skip
        uids = {uid for p in procs.values() for uid in p["uid"]}
        self.expect(uids == {str(UID)}, f"every process runs as uid {UID} (real, effective, saved, fs)", str(uids))
        self.expect(not audit["root_writable"], "the root filesystem refuses writes (read-only)")
        self.expect(all(audit["writable"].values()), "the tmpfs mounts and the checkpoint volume are writable",
                    str(audit["writable"]))  # fmt: skip
        if env.get("SYMPHONY_AUDIT_CHECKPOINT_DIR"):
            self.run("exec", self.web, "python", "manage.py", "audit_checkpoint")
            result = self.run("exec", self.web, "python", "manage.py", "audit_verify")
            self.expect("audit chain OK" in result.stdout and "signed checkpoint" in result.stdout,
                        "audit_checkpoint and audit_verify: the chain matches its checkpoints in the volume",
                        result.stdout[-400:])  # fmt: skip
        self.expect(self.healthcheck[0] == "CMD", "the HEALTHCHECK is an exec form", str(self.healthcheck))
        health = self.run("exec", self.web, *self.healthcheck[1:], check=False)
        self.expect(health.returncode == 0, "the image's HEALTHCHECK passes", health.stderr[-500:])

    # ---- 4. run_agent ----------------------------------------------------------------------------

    def run_agent_task(self) -> None:
        started = time.monotonic()
        text = "the production image runs a task end to end"
        status, _, body = self.http(
            "/api/v1/tasks/", method="POST", key=self.demo["submit_key"],
            body={"orchestra": self.demo["orchestra"], "kind": "word_count", "input": {"text": text},
                  "required_capabilities": ["word_count"]},
        )  # fmt: skip
        self.expect(status == 201, "a task is submitted over HTTP", f"{status} {body[:300]!r}")
        task_id = json.loads(body)["id"]
        command = list(self.service("agent")["command"])
        command[command.index("--url") + 1] = self.base_url
        if "--claim-url" in command:
            # The smoke runs the web container alone, no streams process: its gunicorn answers the
            # claims at once (X-Claim-Wait-Seconds: 0) and the worker falls back to polling.
            command[command.index("--claim-url") + 1] = self.base_url
        env = self.environment("agent", SYMPHONY_AGENT_KEY=self.demo["agents"][0]["key"])
        self.agent = f"{self.tag}-agent"
        # The key travels in this process's environment, not on the engine's command line.
        self.run("run", "--detach", "--name", self.agent, *self.container_flags("agent"),
                 *self.env_flags(env, from_process=("SYMPHONY_AGENT_KEY",)), self.image, *command,
                 env={"SYMPHONY_AGENT_KEY": env["SYMPHONY_AGENT_KEY"]})  # fmt: skip
        self.containers.append(self.agent)
        task: dict = {}
        while time.monotonic() - started < 60:
            _, _, body = self.http(f"/api/v1/tasks/{task_id}/", key=self.demo["submit_key"])
            task = json.loads(body)
            if task.get("status") in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)  # polling for the agent to finish the task
        self.figures["submit -> succeeded (run_agent)"] = f"{time.monotonic() - started:.1f} s"
        self.expect(task.get("status") == "succeeded" and (task.get("result") or {}).get("words") == len(text.split()),
                    "run_agent from the image claimed and completed the task", json.dumps(task)[:500])  # fmt: skip

    # ---- 5. SIGTERM and the logs -----------------------------------------------------------------

    def stop(self, name: str, grace: int) -> float:
        started = time.monotonic()
        self.run("stop", "--time", str(grace), name, timeout=grace + 30)
        took = time.monotonic() - started
        code = self.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        self.expect(code == "0" and took < grace, f"{name.removeprefix(self.tag + '-')} stops on SIGTERM with "
                    f"exit 0 within its {grace} s grace period", f"exit {code} after {took:.1f} s")  # fmt: skip
        return took

    def logs(self, name: str) -> str:
        result = self.run("logs", name, check=False)
        return result.stdout + result.stderr

    def check_logs(self) -> None:
        lines = [line for line in self.logs(self.web).splitlines() if line.strip()]
        bad, warnings = [], []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                bad.append(f"not a JSON line: {line[:300]}")
                continue
            level = str(record.get("level", "")).lower()
            if level in ("error", "critical", "exception") or "exception" in record:
                bad.append(line[:500])
            elif level == "warning":
                warnings.append(line[:300])
        self.expect(bool(lines) and not bad, "no error line in the web container's log", "\n".join(bad))
        self.expect(any("Shutting down: Master" in line for line in lines), "gunicorn logged its clean shutdown")
        for line in warnings:
            print(f"      warning in the log: {line}")
        agent_log = self.logs(self.agent)
        bad = [line for line in agent_log.splitlines() if re.search(r" (ERROR|CRITICAL) |Traceback", line)]
        self.expect("worker start" in agent_log and not bad, "no error line in the agent container's log",
                    "\n".join(bad) or agent_log[-500:])  # fmt: skip
        secrets_used = {
            "SECRET_KEY": self.secret,
            "the agent's key": self.demo["agents"][0]["key"],
            "the submitter's key": self.demo["submit_key"],
        }
        both = self.logs(self.web) + agent_log
        leaked = [name for name, value in secrets_used.items() if value in both]
        self.expect(not leaked, "neither log holds the secret key or an API key", ", ".join(leaked))

    def main(self) -> int:
        started = time.monotonic()
        print(f"image-test: {self.image} with {self.engine}, settings from docker-compose.yml", flush=True)
        try:
            self.check_image()
            self.setup()
            self.migrate_and_seed()
            self.start_web()
            self.check_web()
            self.run_agent_task()
            grace = int(str(self.service("agent").get("stop_grace_period", "10s")).rstrip("s"))
            self.stop(self.agent, grace)
            grace = int(str(self.service("symphony").get("stop_grace_period", "10s")).rstrip("s"))
            self.figures["SIGTERM -> exited (web)"] = f"{self.stop(self.web, grace):.1f} s"
            self.check_logs()
        except (Failed, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            for name in self.containers:
                print(f"---- last lines of {name}:\n{self.logs(name)[-3000:]}", file=sys.stderr)
            return 1
        finally:
            self.teardown()
        self.figures["smoke test"] = f"{time.monotonic() - started:.0f} s"
        print(f"image-test passed: {self.passed} checks")
        for name, value in self.figures.items():
            print(f"  {name}: {value}")
        return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--image", default="localhost/symphony:dev")
    args = parser.parse_args()
    sys.exit(Smoke(args.engine, args.image).main())
