"""Production gunicorn configuration: ``gunicorn -c config/gunicorn.conf.py symphony.wsgi``.

Every knob comes from the environment (README settings table, docs/observability.md):

- ``GUNICORN_BIND`` (default ``0.0.0.0:$PORT``, ``PORT`` default 8000).
- ``WEB_CONCURRENCY`` workers (default: the CPU count) and ``GUNICORN_THREADS`` (default 1). Sync
  workers, one per core, gave the best throughput and the tightest p99 here (STACK-NOTES); more than
  one thread switches gunicorn to ``gthread``. ``GUNICORN_WORKER_CLASS`` overrides.
- ``GUNICORN_TIMEOUT`` / ``GUNICORN_GRACEFUL_TIMEOUT`` / ``GUNICORN_KEEPALIVE`` seconds,
  ``GUNICORN_MAX_REQUESTS`` (0 = never recycle; jittered by 10%).
- ``GUNICORN_ACCESSLOG``: gunicorn's own access log (off by default: the Django middleware already
  writes one richer JSON line per request, with request id, user and key prefix).
- ``GUNICORN_CONTROL_SOCKET``: path of gunicorn's control socket for ``gunicornc`` (off by default).

Prometheus: counters are summed across workers in ``PROMETHEUS_MULTIPROC_DIR``. When it is unset, this
config makes a private folder for the master and its workers (under /dev/shm when there is one) and
removes it when the master exits, so every scrape reports the totals of all workers, whichever serves
it. The folder is emptied when the master starts (stale files from a previous run would be summed in)
and each dead worker's live gauges are dropped. Tracing is set up after fork, in each worker.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "symphony.settings")
# Tells ObservabilityConfig.ready() that post_fork sets tracing up (it must not happen in the master).
os.environ["SYMPHONY_GUNICORN"] = "1"

from observability.logs import logging_config

# --- Prometheus multiprocess folder (before anything imports prometheus_client) -------------------------
# Set in the master, so every worker inherits it. A folder this config made is marked, so a reload
# (which runs this file again) keeps it and the master's exit removes it.
_OWNED_MULTIPROC = "SYMPHONY_OWNED_PROMETHEUS_DIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="symphony-prometheus-",
        dir="/dev/shm" if os.path.isdir("/dev/shm") else None,  # noqa: S108
    )
    os.environ[_OWNED_MULTIPROC] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{_int('PORT', 8000)}"
workers = _int("WEB_CONCURRENCY", multiprocessing.cpu_count())
threads = _int("GUNICORN_THREADS", 1)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - heartbeat files in RAM
# gunicorn's control socket (for `gunicornc`) defaults to $HOME/.gunicorn/gunicorn.ctl: read-only in the
# image ("Control server error: Read-only file system"), and one path for every gunicorn a user runs on a
# machine, so a second server takes the first one's socket. Off unless GUNICORN_CONTROL_SOCKET names a
# path of this server's own (in the image, on the /app/var tmpfs: /app/var/gunicorn.ctl).
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip()
control_socket_disable = not _control_socket
if _control_socket:
    control_socket = _control_socket
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
preload_app = False  # each worker imports the app after fork (tracing and DB connections are per process)

accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
logconfig_dict = logging_config(
    os.environ.get("LOG_LEVEL", "INFO").upper(),
    os.environ.get("LOG_FORMAT") or ("console" if os.environ.get("DEBUG", "").lower() in ("1", "true") else "json"),
    # With logconfig_dict gunicorn logs access lines whatever accesslog says: silence them there.
    gunicorn_access=bool(accesslog),
)


def on_starting(server) -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR: files left by a previous run would be summed into this one's."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    path = Path(folder)
    if path.exists():
        for child in path.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)


def post_fork(server, worker) -> None:
    """Set tracing up in the worker: an exporter thread started in the master would not survive fork."""
    from observability.tracing import configure_tracing

    configure_tracing()


def child_exit(server, worker) -> None:
    """Drop the dead worker's live gauges from the multiprocess files (counters are kept)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the multiprocess folder this config made (one named by the operator is left alone)."""
    owned = os.environ.get(_OWNED_MULTIPROC)
    if owned and owned == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(owned, ignore_errors=True)
