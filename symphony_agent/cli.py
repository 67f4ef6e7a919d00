"""Command line: ``python -m symphony_agent --url URL --key KEY [--concurrency N]`` (also ``manage.py run_agent``).

The key may come from ``--key``, ``--key-file`` or ``SYMPHONY_AGENT_KEY`` (prefer the last two: a
command-line argument is visible to every user of the machine in the process list).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from symphony_agent import __version__
from symphony_agent.client import ProtocolClient
from symphony_agent.handlers import DEFAULT_REGISTRY
from symphony_agent.worker import Worker

log = logging.getLogger("symphony_agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="Symphony's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", default=None, help="The agent's API key (or SYMPHONY_AGENT_KEY, --key-file).")
    parser.add_argument("--key-file", default=None, help="Read the agent's API key from this file.")
    parser.add_argument("--concurrency", type=int, default=1, help="Tasks run at once (default 1).")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="Seconds between claims when idle.")
    parser.add_argument("--heartbeat-interval", type=float, default=15.0, help="Seconds between heartbeats.")
    parser.add_argument("--lease-seconds", type=int, default=60, help="Lease asked for each task (extended at 1/3).")
    parser.add_argument("--grace-seconds", type=float, default=10.0, help="On SIGTERM, wait this long, then hand back.")
    parser.add_argument(
        "--handlers",
        action="append",
        default=[],
        metavar="MODULE",
        help="Import MODULE, which registers handlers with @symphony_agent.handler('kind'); repeatable.",
    )


def resolve_key(key: str | None, key_file: str | None) -> str:
    if key_file:
        return Path(key_file).read_text().strip()
    key = key or os.environ.get("SYMPHONY_AGENT_KEY", "")
    if not key:
        raise SystemExit("symphony_agent: give the agent's key with --key, --key-file or SYMPHONY_AGENT_KEY")
    return key


def build_worker(options: argparse.Namespace | dict) -> Worker:
    opts = vars(options) if isinstance(options, argparse.Namespace) else options
    for module in opts.get("handlers") or []:
        importlib.import_module(module)
    client = ProtocolClient(opts["url"], resolve_key(opts.get("key"), opts.get("key_file")))
    return Worker(
        client,
        registry=DEFAULT_REGISTRY,
        concurrency=opts["concurrency"],
        poll_interval=opts["poll_interval"],
        heartbeat_interval=opts["heartbeat_interval"],
        lease_seconds=opts["lease_seconds"],
        grace_seconds=opts["grace_seconds"],
        version=f"symphony_agent/{__version__}",
    )


def run(worker: Worker) -> int:
    """Run until SIGTERM or SIGINT; then finish or hand back the running tasks and return 0."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping (grace %.0fs)", signal.Signals(signum).name, worker.grace_seconds)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("worker starting: handlers %s, concurrency %d", ", ".join(worker.registry.kinds()), worker.concurrency)
    worker.run()
    if any(t.name.startswith("symphony-task") and t.is_alive() for t in threading.enumerate()):
        # A handler ignoring cancellation would keep the process alive; its task was handed back already.
        log.warning("exiting with handler threads still running")
        logging.shutdown()
        os._exit(0)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="symphony_agent", description="Run tasks for one Symphony agent.")
    add_arguments(parser)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return run(build_worker(options))
