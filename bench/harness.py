"""Process helpers for bench/run.py: start gunicorn, wait for it, read RSS, always stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "config" / "gunicorn.conf.py"


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    started_at: float
    ready_after: float | None = None
    ready_cpu: float | None = None  # CPU seconds all gunicorn processes had used when ready first answered

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def gunicorn_command(port: int, *, workers: int, worker_class: str, threads: int) -> list[str]:
    command = [sys.executable, "-m", "gunicorn", "symphony.wsgi", "--bind", f"127.0.0.1:{port}"]
    if GUNICORN_CONF.exists():
        command += ["--config", str(GUNICORN_CONF)]
    command += ["--workers", str(workers), "--worker-class", worker_class, "--worker-tmp-dir", "/dev/shm"]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    return command


def status_of(url: str, *, headers: dict[str, str] | None = None, method: str = "GET", body: bytes | None = None,
              timeout: float = 10) -> int:  # fmt: skip
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=body)  # noqa: S310 - loopback
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback URL we built
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


@contextmanager
def gunicorn(env: dict[str, str], port: int, *, workers: int, worker_class: str = "sync", threads: int = 1,
             log: Path, ready_path: str = "/health/ready", timeout: float = 60):  # fmt: skip
    """Start gunicorn, record the time to the first 200 on ``ready_path``; stop it on exit, whatever happens."""
    command = gunicorn_command(port, workers=workers, worker_class=worker_class, threads=threads)
    with open(log, "ab") as out:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    server = Server(process=process, port=port, started_at=started)
    try:
        deadline = started + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log}")
            if status_of(server.base + ready_path, timeout=2) == 200:
                server.ready_after = time.monotonic() - started
                server.ready_cpu = cpu_seconds([process.pid, *children(process.pid)])
                break
            time.sleep(0.01)
        else:
            raise TimeoutError(f"gunicorn did not answer 200 on {ready_path} within {timeout}s; see {log}")
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (from /proc/<pid>/stat), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
