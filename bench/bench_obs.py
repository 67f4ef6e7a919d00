"""Benchmark the observability stack under gunicorn (config/gunicorn.conf.py) with wrk.

Measures, on PostgreSQL + Redis with 2 sync workers and 16 concurrent connections:

1. p50/p99 latency, throughput and worker CPU per request of ``/health/live`` and ``/health/ready``;
2. the throughput of an authenticated API read (``GET /api/v1/me/`` when the accounts API exists,
   else ``/api/v1/bench/whoami/`` from bench/urls.py, the same kind of request: API-key lookup, DRF,
   JSON) with the whole observability stack on (JSON access log, multiprocess Prometheus metrics,
   tracing exporting OTLP/HTTP to a local sink) and off (see bench/settings_obs.py), as a ratio; also
   "untraced" (logs and metrics only) and "sampled" (tracing with a 10 % parent-based ratio sampler).

Usage: ``python bench/bench_obs.py [--duration 10] [--rounds 2]``. Needs PostgreSQL and Redis on
127.0.0.1 (``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL``) and ``wrk``. wrk, gunicorn and the services
share the machine's cores, so absolute numbers are this machine's; the on/off ratio is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = 18480
SINK_PORT = 18481
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/symphony_obs_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
SECRET_KEY = "bench-secret-key-not-for-production-0123456789abcdef"  # noqa: S105 - a throwaway bench server


class OtlpSink:
    """Accepts OTLP/HTTP exports and counts them (a stand-in for a collector)."""

    def __init__(self, port: int) -> None:
        self.exports = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sink.bytes += len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                sink.exports += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def base_env(observability: bool, tmp: Path, *, tracing: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "DJANGO_SETTINGS_MODULE": "bench.settings_obs",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": "bench",
        "SECRET_KEY": SECRET_KEY,
        "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "GUNICORN_BIND": f"127.0.0.1:{PORT}",
        "WEB_CONCURRENCY": "2",
        "SYMPHONY_BENCH_OBSERVABILITY": "on" if observability else "off",
        "LOG_LEVEL": "INFO" if observability else "WARNING",
        "LOG_FORMAT": "json",
    }
    if observability:
        prom = tmp / "prometheus"
        prom.mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    if observability and tracing:
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{SINK_PORT}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def prepare_database(env: dict[str, str]) -> str:
    """Create and migrate the bench database, and return a fresh API key for a viewer."""
    name = DATABASE_URL.rsplit("/", 1)[1]
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], capture_output=True, check=False)
    manage(env, "migrate", "--noinput", "-v", "0")
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from accounts.models import Role\n"
        "from accounts.services import api_key_create\n"
        "user, _ = get_user_model().objects.get_or_create(username='bench-viewer')\n"
        "user.roles.set(Role.objects.filter(name='viewer'))\n"
        "import uuid\n_key, raw = api_key_create(owner=user, name='bench-' + uuid.uuid4().hex[:8])\n"
        "print('KEY=' + raw)\n"
    )
    match = re.search(r"KEY=(\S+)", manage(env, "shell", "-c", code))
    if not match:
        raise SystemExit("could not create the bench API key")
    return match.group(1)


@contextmanager
def gunicorn(env: dict[str, str], log_path: Path):
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "symphony.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health/startup", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"gunicorn did not start; see {log_path}") from None
                    time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def status_of(path: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def worker_cpu_seconds(master_pid: int) -> float:
    """User+system CPU of gunicorn's workers (all their threads), from /proc."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    total = 0
    for pid in children:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def wrk(path: str, duration: int, headers: dict[str, str] | None = None, master_pid: int | None = None) -> dict:
    """Run wrk (2 threads, 16 connections) and return rps, p50_ms, p99_ms, errors and, given the
    gunicorn master, the workers' CPU milliseconds per request: unlike throughput, that figure barely
    moves when other work competes for the same cores."""
    cpu_before = worker_cpu_seconds(master_pid) if master_pid else 0.0
    command = ["wrk", "-t2", "-c16", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{PORT}{path}"], capture_output=True, text=True, check=True
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    requests_done = int(re.search(r"(\d+) requests in", output).group(1))
    if master_pid:
        result["worker_cpu_ms_per_request"] = round(
            (worker_cpu_seconds(master_pid) - cpu_before) * 1000 / max(requests_done, 1), 3
        )
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        result[key] = round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    result["socket_errors"] = socket_errors.group(1) if socket_errors else ""
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs for the API ratio")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    figures: dict[str, object] = {"workers": 2, "connections": 16, "duration_s": args.duration}
    figures["load_average_before"] = os.getloadavg()[0]  # others' work on the same cores skews everything
    sink = OtlpSink(SINK_PORT)
    with tempfile.TemporaryDirectory(prefix="bench-obs-") as tmp_name:
        tmp = Path(tmp_name)
        raw_key = prepare_database(base_env(True, tmp))
        auth = {"Authorization": f"Bearer {raw_key}"}

        with gunicorn(base_env(True, tmp), tmp / "on-probes.log") as server:
            api_path = "/api/v1/me/" if status_of("/api/v1/me/", auth) == 200 else "/api/v1/bench/whoami/"
            assert status_of(api_path, auth) == 200, f"{api_path} does not answer 200 with the bench key"
            for probe in ("/health/live", "/health/ready"):
                wrk(probe, 2)  # warm-up: connections, migration graph, caches
                figures[probe] = wrk(probe, args.duration, master_pid=server.pid)
        figures["api_path"] = api_path

        # "untraced": logs and metrics on, no OTEL_* variables: how much of the cost is tracing.
        # "sampled": everything on, 10 % of new traces kept (the sampling docs/observability.md advises).
        sampled = base_env(True, tmp) | {
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        }
        envs = {
            "on": base_env(True, tmp),
            "off": base_env(False, tmp),
            "untraced": base_env(True, tmp, tracing=False),
            "sampled": sampled,
        }
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in envs}
        for _round in range(args.rounds):
            for mode, env in envs.items():
                with gunicorn(env, tmp / f"{mode}.log") as server:
                    wrk(api_path, 2, auth)
                    runs[mode].append(wrk(api_path, args.duration, auth, master_pid=server.pid))
        access_lines = sum(1 for line in (tmp / "on.log").read_text().splitlines() if '"symphony.access"' in line)

    sink.close()
    mean = {mode: sum(r["rps"] for r in results) / len(results) for mode, results in runs.items()}
    cpu = {mode: sum(r["worker_cpu_ms_per_request"] for r in results) / len(results) for mode, results in runs.items()}
    figures["api"] = {
        "runs": runs,
        "rps_on": round(mean["on"], 1),
        "rps_off": round(mean["off"], 1),
        "rps_untraced": round(mean["untraced"], 1),
        "throughput_ratio_untraced_over_off": round(mean["untraced"] / mean["off"], 3),
        "worker_cpu_ms_per_request": {mode: round(value, 3) for mode, value in cpu.items()},
        # Throughput a CPU-bound server reaches is inversely proportional to CPU per request.
        "cpu_capacity_ratio_on_over_off": round(cpu["off"] / cpu["on"], 3),
        "cpu_capacity_ratio_untraced_over_off": round(cpu["off"] / cpu["untraced"], 3),
        "cpu_capacity_ratio_sampled_over_off": round(cpu["off"] / cpu["sampled"], 3),
        "throughput_ratio_on_over_off": round(mean["on"] / mean["off"], 3),
        "otlp_exports_received": sink.exports,
        "access_lines_last_on_run": access_lines,
    }
    figures["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(figures, indent=2))
    for probe in ("/health/live", "/health/ready"):
        f = figures[probe]
        print(
            f"{probe:15} p50 {f['p50_ms']:.2f} ms  p99 {f['p99_ms']:.2f} ms  {f['rps']:.0f} req/s  "
            f"{f['worker_cpu_ms_per_request']} CPU ms/request"
        )
    api = figures["api"]
    print(
        f"{api_path}: {api['rps_on']} req/s with observability, {api['rps_off']} without: "
        f"ratio {api['throughput_ratio_on_over_off']} (logs+metrics without tracing: "
        f"{api['rps_untraced']} req/s, ratio {api['throughput_ratio_untraced_over_off']})"
    )
    print(
        f"worker CPU per request: {api['worker_cpu_ms_per_request']} ms; capacity ratio on/off "
        f"{api['cpu_capacity_ratio_on_over_off']}, untraced/off {api['cpu_capacity_ratio_untraced_over_off']}, "
        f"10 %-sampled/off {api['cpu_capacity_ratio_sampled_over_off']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
