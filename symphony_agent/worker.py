"""The worker loop: heartbeat, claim, run handlers in threads, keep leases alive, report, stop cleanly."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from symphony_agent.client import LeaseLostError, ProtocolClient, ProtocolError
from symphony_agent.handlers import (
    DEFAULT_REGISTRY,
    HandlerRegistry,
    PermanentError,
    RetryableError,
    TaskCancelled,
    TaskContext,
)

log = logging.getLogger("symphony_agent")


@dataclass
class _Running:
    """One claimed task in this worker. ``settled`` is set by whoever reports it first (or gives up on it)."""

    ctx: TaskContext
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False

    def settle(self) -> bool:
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class Worker:
    """Runs tasks for one agent until ``stop()`` (SIGTERM in the CLI).

    - claims up to ``concurrency`` tasks at a time, polling every ``poll_interval`` seconds when idle;
    - runs each in a thread with the handler registered for its kind;
    - extends every running lease each ``lease_seconds / 3`` seconds; a 409 stops that task's work;
    - heartbeats every ``heartbeat_interval`` seconds; cancelled tasks named in the answer are stopped;
    - on stop, waits up to ``grace_seconds`` for running tasks, then hands the rest back
      (fail with ``retryable=True``) so another agent picks them up at once instead of after the lease.
    """

    def __init__(
        self,
        client: ProtocolClient,
        *,
        registry: HandlerRegistry | None = None,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 15.0,
        lease_seconds: int = 60,
        grace_seconds: float = 10.0,
        version: str = "",
    ) -> None:
        self.client = client
        self.registry = registry or DEFAULT_REGISTRY
        self.concurrency = max(1, concurrency)
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.version = version
        self.stopping = threading.Event()
        self.counts = {"succeeded": 0, "failed": 0, "handed_back": 0, "lost": 0}
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self._slot_free = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop: no new claims; running tasks get the grace period."""
        self.stopping.set()
        self._slot_free.set()

    def run(self) -> None:
        """Block until ``stop()``; then finish or hand back every task this worker holds."""
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="symphony-heartbeat", daemon=True),
            threading.Thread(target=self._lease_loop, name="symphony-lease", daemon=True),
        ]
        for thread in threads:
            thread.start()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="symphony-task")
        try:
            self._claim_loop(pool)
        finally:
            self._shutdown(pool)
            for thread in threads:
                thread.join(timeout=2)
            log.info("worker stopped: %s", self.counts)

    def _claim_loop(self, pool: ThreadPoolExecutor) -> None:
        backoff = self.poll_interval
        while not self.stopping.is_set():
            free = self.concurrency - self.running_count()
            if free <= 0:
                self._slot_free.clear()
                self._slot_free.wait(self.poll_interval)
                continue
            try:
                tasks = self.client.claim(max_tasks=free, lease_seconds=self.lease_seconds)
            except ProtocolError as exc:
                log.warning("claim failed: %s", exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = self.poll_interval
            for task in tasks:
                running = _Running(
                    TaskContext(
                        id=task["id"],
                        kind=task["kind"],
                        input=task.get("input"),
                        attempt=task["attempt"],
                        traceparent=task.get("traceparent") or "",
                    )
                )
                with self._lock:
                    self._running[running.ctx.id] = running
                pool.submit(self._execute, running)
            if not tasks:
                # Jitter keeps a fleet of idle agents from polling in lock-step.
                self.stopping.wait(self.poll_interval * random.uniform(0.8, 1.2))

    def _shutdown(self, pool: ThreadPoolExecutor) -> None:
        deadline = time.monotonic() + self.grace_seconds
        while self.running_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            leftovers = list(self._running.values())
        for running in leftovers:
            running.ctx.cancelled.set()
            if running.settle():
                self._report_fail(running, "the worker stopped before finishing; handed back", retryable=True)
                self.counts["handed_back"] += 1
        pool.shutdown(wait=False, cancel_futures=True)

    def running_count(self) -> int:
        with self._lock:
            return len(self._running)

    def _forget(self, task_id: int) -> None:
        with self._lock:
            self._running.pop(task_id, None)
        self._slot_free.set()

    # --- running one task --------------------------------------------------------------------------

    def _execute(self, running: _Running) -> None:
        ctx = running.ctx
        try:
            func = self.registry.get(ctx.kind)
            if func is None:
                if running.settle():
                    self._report_fail(running, f"no handler for kind {ctx.kind!r} in this worker", retryable=False)
                return
            with _task_span(ctx):
                outcome, value = self._call(func, ctx)
            if not running.settle():
                return  # handed back at shutdown, or the lease was lost: someone else owns it now
            if outcome == "ok":
                self._report_complete(running, value)
            elif outcome != "cancelled":
                self._report_fail(running, value, retryable=outcome == "retry")
        finally:
            self._forget(ctx.id)

    @staticmethod
    def _call(func: Any, ctx: TaskContext) -> tuple[str, Any]:
        try:
            return "ok", func(ctx)
        except TaskCancelled:
            return "cancelled", None
        except RetryableError as exc:
            return "retry", f"{exc.__class__.__name__}: {exc}"
        except PermanentError as exc:
            return "error", f"{exc.__class__.__name__}: {exc}"
        except Exception as exc:
            log.exception("handler for %s raised", ctx.kind)
            return "error", "".join(traceback.format_exception_only(exc)).strip()

    def _report_complete(self, running: _Running, result: Any) -> None:
        try:
            self.client.complete(running.ctx.id, attempt=running.ctx.attempt, result=result)
            self.counts["succeeded"] += 1
            log.info("task %s (%s) succeeded", running.ctx.id, running.ctx.kind)
        except LeaseLostError as exc:
            self.counts["lost"] += 1
            log.warning("task %s: result discarded, %s", running.ctx.id, exc)
        except ProtocolError as exc:
            log.error("task %s: could not report the result: %s", running.ctx.id, exc)

    def _report_fail(self, running: _Running, error: str, *, retryable: bool) -> None:
        try:
            self.client.fail(running.ctx.id, attempt=running.ctx.attempt, error=error, retryable=retryable)
            self.counts["failed"] += 1
            log.info("task %s (%s) failed (retryable=%s): %s", running.ctx.id, running.ctx.kind, retryable, error)
        except LeaseLostError as exc:
            self.counts["lost"] += 1
            log.warning("task %s: failure not recorded, %s", running.ctx.id, exc)
        except ProtocolError as exc:
            log.error("task %s: could not report the failure: %s", running.ctx.id, exc)

    def _lose(self, task_id: int, why: str) -> None:
        """Stop working on a task this agent no longer holds (cancelled, or its lease moved on)."""
        with self._lock:
            running = self._running.get(task_id)
        if running is not None:
            running.ctx.cancelled.set()
            if running.settle():
                self.counts["lost"] += 1
                log.warning("task %s: stopping, %s", task_id, why)

    # --- background loops --------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while True:
            busy = self.running_count()
            status = "busy" if busy >= self.concurrency else ("active" if busy else "idle")
            try:
                answer = self.client.heartbeat(
                    status=status, metrics={"running": busy, **self.counts}, version=self.version or None
                )
                for task_id in answer.get("cancelled_tasks", []):
                    self._lose(task_id, "it was cancelled")
            except ProtocolError as exc:
                log.warning("heartbeat failed: %s", exc)
            if self.stopping.wait(self.heartbeat_interval):
                return

    def _lease_loop(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while not self.stopping.wait(interval):
            with self._lock:
                running = [r for r in self._running.values() if not r.settled]
            for item in running:
                try:
                    self.client.extend(item.ctx.id, attempt=item.ctx.attempt, lease_seconds=self.lease_seconds)
                except LeaseLostError as exc:
                    self._lose(item.ctx.id, str(exc))
                except ProtocolError as exc:
                    log.warning("task %s: lease extension failed: %s", item.ctx.id, exc)


@contextlib.contextmanager
def _task_span(ctx: TaskContext) -> Iterator[None]:
    """Run the handler in a span whose parent is the submission's traceparent, when OpenTelemetry is set up.

    Without a configured tracer provider the OpenTelemetry API hands out no-op spans, so this costs nothing.
    """
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:  # pragma: no cover - opentelemetry-api is optional for the worker
        yield
        return
    parent = TraceContextTextMapPropagator().extract({"traceparent": ctx.traceparent}) if ctx.traceparent else None
    tracer = trace.get_tracer("symphony_agent")
    attributes = {"symphony.task.id": ctx.id, "symphony.task.kind": ctx.kind, "symphony.task.attempt": ctx.attempt}
    with tracer.start_as_current_span(
        f"task {ctx.kind}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield
