"""Command line: ``symphony-agent --url URL --handlers MODULE`` (also ``python -m symphony_agent`` and
``manage.py run_agent``). ``symphony-agent --help`` lists every option with its default and variable.

Exit status: 0 after a clean stop (SIGTERM, SIGINT, or ``--once`` with nothing left to run); 2 when it
cannot run at all (a missing setting, an unreadable key file, a handler module that does not import,
a key the server refuses), with one line on stderr saying why; 1 for anything unexpected.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any

from symphony_agent import __version__, demo
from symphony_agent.client import KeyRejectedError, ProtocolClient, ProtocolError, key_label
from symphony_agent.config import ConfigError, Settings, load
from symphony_agent.config import add_arguments as _add_options
from symphony_agent.handlers import DEFAULT_REGISTRY, HandlerRegistry
from symphony_agent.worker import Worker

log = logging.getLogger("symphony_agent")
PROG = "symphony-agent"


def add_arguments(parser: argparse.ArgumentParser, *, version: bool = True) -> None:
    """The worker's options (``manage.py run_agent`` adds them to Django's parser, which has its own --version)."""
    if version:
        parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_options(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run tasks for one Symphony agent: heartbeat, claim, run your handlers, report.",
        epilog="Settings come from flags, then SYMPHONY_AGENT_* variables, then the --config file (TOML, "
        "the option names as keys: poll_interval = 2), then the defaults.",
    )
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_from_options(vars(build_parser().parse_args(argv)))


def run_from_options(options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> int:
    """Load the settings, import the handlers, run the worker until stopped; return the exit status."""
    try:
        settings = load(options, environ)
    except ConfigError as exc:
        return _refuse(str(exc))
    names = AgentNameFilter(key_label(settings.key))
    configure_logging(settings.log_level, names)
    try:
        registry = load_handlers(settings)
    except ConfigError as exc:
        return _refuse(str(exc))
    worker = build_worker(settings, registry)
    names.worker = worker
    return run(worker)


def load_handlers(settings: Settings) -> HandlerRegistry:
    """Import the handler modules (from the working directory too, as ``python -m`` would) and add the
    demo handlers when asked. Raises ``ConfigError`` for a module that does not import, or no handler."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in settings.handlers:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - whatever the import raised, this module cannot run
            raise ConfigError(f"cannot import handler module {module!r}: {_one_line(exc)}") from None
    if settings.demo:
        demo.register(DEFAULT_REGISTRY)
    if not len(DEFAULT_REGISTRY):
        raise ConfigError("no handlers to run: give --handlers MODULE (repeatable), or --demo for the demo ones")
    return DEFAULT_REGISTRY


def build_worker(settings: Settings, registry: HandlerRegistry) -> Worker:
    client = ProtocolClient(settings.url, settings.key, timeout=settings.timeout, claim_url=settings.claim_url)
    return Worker(
        client,
        registry=registry,
        concurrency=settings.concurrency,
        poll_interval=settings.poll_interval,
        wait_seconds=settings.wait_seconds,
        heartbeat_interval=settings.heartbeat_interval,
        lease_seconds=settings.lease_seconds,
        grace_seconds=settings.grace_seconds,
        max_backoff=settings.max_backoff,
        once=settings.once,
        version=f"{PROG}/{__version__}",
    )


def run(worker: Worker) -> int:
    """Run until SIGTERM or SIGINT (then finish or hand back the running tasks), or ``--once`` is done."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping (grace %.0fs)", signal.Signals(signum).name, worker.grace_seconds)
        worker.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    status = 0
    try:
        worker.run()
    except KeyRejectedError as exc:
        status = _refuse(f"{worker.client.url} refused the agent key {worker.client.key_label}: {_reason(exc)}")
    except ProtocolError as exc:
        hint = " (is --url Symphony's base URL?)" if exc.status == 404 else ""
        status = _refuse(f"{worker.client.url} refused the worker's first call: {exc}{hint}")
    if _stray_threads():
        # A handler ignoring its cancellation would keep the process alive; its task was handed back.
        log.warning("exiting with %d handler or call thread(s) still running", len(_stray_threads()))
        logging.shutdown()
        sys.stderr.flush()
        os._exit(status)
    return status


def _stray_threads(wait: float = 1.0) -> list[threading.Thread]:
    """The worker's threads still running after a moment (idle pool threads end within it)."""
    deadline = time.monotonic() + wait
    for thread in threading.enumerate():
        if thread.name.startswith(("symphony-task", "symphony-io")):
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threading.enumerate() if t.name.startswith(("symphony-task", "symphony-io")) and t.is_alive()]


class AgentNameFilter(logging.Filter):
    """Puts the agent's name on every log record (``%(agent)s``): the key's public prefix until the
    server's first answer names the agent."""

    def __init__(self, placeholder: str) -> None:
        super().__init__()
        self.placeholder = placeholder
        self.worker: Worker | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        record.agent = (self.worker.name if self.worker is not None else None) or self.placeholder
        return True


def configure_logging(level: str, names: AgentNameFilter) -> None:
    """One line per event on stderr, each with the agent's name; the handlers' own loggers included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(names)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(agent)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("symphony_agent").propagate = True


def _refuse(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return 2


def _reason(exc: KeyRejectedError) -> str:
    detail = exc.detail or str(exc)
    return f"{detail} ({exc.code})" if exc.code else detail


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__
