"""The worker: heartbeat, claim, run handlers, keep leases alive, report, stop cleanly.

One asyncio event loop drives everything. ``async def`` handlers run on it; plain functions run in a
pool of ``concurrency`` threads; protocol calls (blocking ``requests``) run in a separate pool, so a busy
handler never delays a heartbeat or a lease extension.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from symphony_agent.client import (
    Backoff,
    KeyRejectedError,
    LeaseLostError,
    ProtocolClient,
    ProtocolError,
    ServerUnavailableError,
)
from symphony_agent.handlers import (
    DEFAULT_REGISTRY,
    AwaitingApproval,
    Handler,
    HandlerRegistry,
    PermanentError,
    RetryableError,
    TaskCancelled,
    TaskContext,
)

log = logging.getLogger("symphony_agent")

#: How long a task handed back at shutdown may keep retrying its report while the server is unavailable.
HAND_BACK_SECONDS = 5.0
#: On stop, how long an in-flight waiting claim may still take to answer (then it is abandoned).
STOP_CLAIM_SECONDS = 2.0


@dataclass
class _Running:
    """One claimed task in this worker. ``settled`` is taken by whoever decides its fate first: the
    handler's own report, a cancellation or lost lease, or the hand-back at shutdown."""

    ctx: TaskContext
    job: asyncio.Task | None = None
    is_async: bool = False
    settled: bool = False

    def settle(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        return True


class Worker:
    """Runs tasks for one agent until ``stop()`` (SIGTERM in the CLI), or with ``once`` until none is left.

    - heartbeats first: a rejected key raises ``KeyRejectedError`` at once; an unreachable server is
      retried with backoff (``Retry-After`` honoured) until it answers;
    - claims up to ``concurrency`` tasks at a time, polling every ``poll_interval`` seconds when idle;
    - extends every running lease each ``lease_seconds / 3`` seconds; a 409 (the task was cancelled, or
      its lease moved on) sets the task's ``cancelled`` event and cancels an ``async def`` handler;
    - heartbeats every ``heartbeat_interval`` seconds; cancelled tasks named in the answer stop the same way;
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
        wait_seconds: int = 0,
        heartbeat_interval: float = 15.0,
        lease_seconds: int = 60,
        grace_seconds: float = 10.0,
        max_backoff: float = 30.0,
        once: bool = False,
        version: str = "",
    ) -> None:
        self.client = client
        self.registry = registry if registry is not None else DEFAULT_REGISTRY
        self.concurrency = max(1, concurrency)
        self.poll_interval = poll_interval
        self.wait_seconds = wait_seconds
        self.heartbeat_interval = heartbeat_interval
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.max_backoff = max_backoff
        self.once = once
        self.version = version
        #: The agent's name, from the server's first answer (None until then).
        self.name: str | None = None
        #: Set when the server refused the key (or, at start-up, the call): ``run()`` raises it.
        self.fatal: ProtocolError | None = None
        self.counts = {"succeeded": 0, "failed": 0, "handed_back": 0, "lost": 0, "parked": 0}
        self._running: dict[int, _Running] = {}
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()  # a task finished, or stop was asked
        self._pool: ThreadPoolExecutor | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop (from any thread or a signal handler): no new claims; running tasks
        get the grace period."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to stop
                loop.call_soon_threadsafe(self._stop_now)

    def running_count(self) -> int:
        return len(self._running)

    def run(self) -> None:
        """Block until stopped; then finish or hand back every task this worker holds.

        Raises ``KeyRejectedError`` when the server refused the key, and ``ProtocolError`` when the very
        first call was refused for another reason (a wrong URL, say).
        """
        loop = asyncio.new_event_loop()
        calls = ThreadPoolExecutor(self.concurrency + 4, thread_name_prefix="symphony-io")
        loop.set_default_executor(calls)
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="symphony-task")
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            self._loop = None
            _close(loop)
            # Idle threads end now; a sync handler that ignores its cancellation keeps its thread (its
            # task was handed back), and so does a call still waiting for the server (its timeout ends it).
            for pool in (calls, self._pool):
                pool.shutdown(wait=False, cancel_futures=True)
        if self.fatal is not None:
            raise self.fatal

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._loop = loop
        if self._stop_requested.is_set():
            self._stop_now()
        try:
            if not await self._connect():
                return
        except ProtocolError as exc:  # refused at start-up: retrying cannot help
            self.fatal = exc
            return
        log.info(
            "worker started: handlers %s, concurrency %d%s",
            ", ".join(self.registry.kinds()) or "(none)",
            self.concurrency,
            ", once" if self.once else "",
        )
        background = [asyncio.create_task(self._heartbeat_loop()), asyncio.create_task(self._lease_loop())]
        try:
            await self._claim_loop()
        finally:
            await self._shutdown()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            log.info("worker stopped: %s", self.counts)

    def _stop_now(self) -> None:
        self._stopping.set()
        self._changed.set()

    def _reject(self, exc: KeyRejectedError) -> None:
        """The key stopped working mid-run (revoked, expired): stop now; nothing more can be reported."""
        if self.fatal is None:
            self.fatal = exc
        self._stop_now()

    def _backoff(self) -> Backoff:
        return Backoff(base=min(0.5, self.poll_interval), cap=self.max_backoff)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when the worker is asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _wait_for_change(self, timeout: float | None) -> None:
        """Wait until a task finishes or stop is asked (or ``timeout`` passes); at once when stopping."""
        if not self._stopping.is_set():
            await self._wait_for_a_task(timeout)

    async def _wait_for_a_task(self, timeout: float | None) -> None:
        """Wait until a task finishes (or ``timeout`` passes)."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _retry_later(self, backoff: Backoff, exc: ServerUnavailableError, what: str) -> None:
        delay = backoff.next_delay(exc.retry_after)
        reason = f"Retry-After {exc.retry_after:g}s" if exc.retry_after is not None else "backoff"
        log.debug("%s: next try in %.1fs (%s)", what, delay, reason)
        await self._sleep(delay)

    # --- the loops ---------------------------------------------------------------------------------

    async def _connect(self) -> bool:
        """The first heartbeat, retried while the server is unavailable. False if stopped meanwhile."""
        backoff = self._backoff()
        while not self._stopping.is_set():
            try:
                await self._heartbeat()
                return True
            except ServerUnavailableError as exc:
                await self._retry_later(backoff, exc, "heartbeat")
        return False

    async def _heartbeat(self) -> None:
        busy = len(self._running)
        status = "busy" if busy >= self.concurrency else ("active" if busy else "idle")
        answer = await asyncio.to_thread(
            self.client.heartbeat, status=status, metrics={"running": busy, **self.counts}, version=self.version or None
        )
        self.name = answer.get("name") or self.name
        for task_id in answer.get("cancelled_tasks", []):
            self._lose(task_id, "it was cancelled")

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self._heartbeat()
            except ServerUnavailableError:
                pass  # the client's reachability log says so, once
            except KeyRejectedError as exc:
                self._reject(exc)
            except ProtocolError as exc:
                log.warning("heartbeat refused: %s", exc)
            except Exception:  # a bug here must not end the heartbeats
                log.exception("heartbeat failed")

    async def _claim_loop(self) -> None:
        backoff = self._backoff()
        while not self._stopping.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                await self._wait_for_change(self.poll_interval)
                continue
            wait = 0 if self.once else self.wait_seconds
            try:
                claimed = await self._claim(free, wait)
                if claimed is None:
                    return  # stopping
                tasks, waited = claimed
            except ServerUnavailableError as exc:
                await self._retry_later(backoff, exc, "claim")
                continue
            except KeyRejectedError as exc:
                self._reject(exc)
                return
            except ProtocolError as exc:
                log.error("claim refused: %s", exc)
                await self._sleep(backoff.next_delay())
                continue
            except Exception:  # a bug here must not end the claims
                log.exception("claim failed")
                await self._sleep(backoff.next_delay())
                continue
            backoff.reset()
            for task in tasks:
                self._start(task)
            if len(tasks) == free:
                continue  # the queue may hold more: claim again as soon as a slot is free
            if not tasks:
                log.debug("claim: nothing to run")
                if waited:
                    continue  # the server held the claim until now: ask again at once
            if not self.once:
                await self._sleep(self.poll_interval * random.uniform(0.8, 1.2))  # jitter: no lock-step fleet
            elif self._running:
                await self._wait_for_change(None)  # once: when a task finishes, look again
            else:
                return  # once: nothing left to run

    async def _claim(self, free: int, wait: int) -> tuple[list[dict[str, Any]], bool] | None:
        """One claim, held by the server up to ``wait`` seconds; None if the worker is asked to stop first.

        A waiting claim runs on a daemon thread of its own, so stopping waits for it at most
        ``STOP_CLAIM_SECONDS`` (and the interpreter's exit not at all); tasks it still brings after the
        worker gave up on it are handed back if the worker is still running, else their leases expire.
        """
        if not wait:
            return await asyncio.to_thread(
                self.client.claim_waiting, max_tasks=free, lease_seconds=self.lease_seconds
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[list[dict[str, Any]], bool]] = loop.create_future()
        abandoned = False
        handing_back: set[asyncio.Future[None]] = set()  # referenced until done (the loop keeps weak ones)

        def deliver(result: Any, error: BaseException | None) -> None:  # on the loop's thread
            if abandoned:
                for task in (result or ([], False))[0]:
                    handing_back.add(
                        asyncio.ensure_future(self._hand_back(_Running(TaskContext.from_claim(task, self.client))))
                    )
            elif error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(result)

        def call() -> None:
            result, error = None, None
            try:
                result = self.client.claim_waiting(max_tasks=free, lease_seconds=self.lease_seconds, wait_seconds=wait)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed: a task claimed now expires with its lease
                loop.call_soon_threadsafe(deliver, result, error)

        threading.Thread(target=call, name="symphony-claim", daemon=True).start()
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({answer, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not answer.done():
            # Stopping: an answer already on its way (the server claimed as we were asked to stop) is
            # taken and handed back as usual; a claim the server still holds is left (exiting closes its
            # connection, which releases it on the server, with nothing claimed).
            await asyncio.wait({answer}, timeout=STOP_CLAIM_SECONDS)
        if answer.done():
            return answer.result()
        abandoned = True
        return None

    async def _lease_loop(self) -> None:
        # Runs on through the grace period: tasks still finishing must keep their leases.
        interval = max(0.2, self.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            held = [running for running in self._running.values() if not running.settled]
            await asyncio.gather(*(self._extend(running) for running in held))

    async def _extend(self, running: _Running) -> None:
        ctx = running.ctx
        try:
            await asyncio.to_thread(self.client.extend, ctx.id, attempt=ctx.attempt, lease_seconds=self.lease_seconds)
        except LeaseLostError as exc:
            self._lose(ctx.id, str(exc))
        except ServerUnavailableError:
            pass  # tried again at the next interval; the lease outlives two missed extensions
        except KeyRejectedError as exc:
            self._reject(exc)
        except ProtocolError as exc:
            log.warning("task %s: lease extension refused: %s", ctx.id, exc)
        except Exception:  # a bug here must not end the other tasks' extensions
            log.exception("task %s: lease extension failed", ctx.id)

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        if self._running and self.fatal is None:
            log.info("stopping: up to %.0fs for %d running task(s)", self.grace_seconds, len(self._running))
            deadline = loop.time() + self.grace_seconds
            while self._running and loop.time() < deadline:
                await self._wait_for_a_task(deadline - loop.time())
        leftovers = list(self._running.values())
        taken = [running for running in leftovers if running.settle()]
        for running in taken:
            running.ctx.cancelled.set()
            if running.job is not None:
                running.job.cancel()
        if self.fatal is None:
            await asyncio.gather(*(self._hand_back(running) for running in taken))
        # Reports already under way (their handler finished in time) get a moment to land.
        reporting = [r.job for r in leftovers if r not in taken and r.job is not None and not r.job.done()]
        if reporting:
            await asyncio.wait(reporting, timeout=HAND_BACK_SECONDS)

    async def _hand_back(self, running: _Running) -> None:
        error = "the worker stopped before finishing; handed back"
        await self._report_fail(running, error, retryable=True, retry_for=HAND_BACK_SECONDS, count="handed_back")

    # --- running one task --------------------------------------------------------------------------

    def _start(self, task: dict[str, Any]) -> None:
        running = _Running(TaskContext.from_claim(task, self.client))
        self._running[running.ctx.id] = running
        running.job = asyncio.create_task(self._execute(running), name=f"symphony-task-{running.ctx.id}")
        log.info("task %s (%s) claimed, attempt %s", running.ctx.id, running.ctx.kind, running.ctx.attempt)

    def _forget(self, task_id: int) -> None:
        self._running.pop(task_id, None)
        self._changed.set()

    def _lose(self, task_id: int, why: str) -> None:
        """Stop working on a task this agent no longer holds (cancelled, or its lease moved on)."""
        running = self._running.get(task_id)
        if running is None or not running.settle():
            return
        running.ctx.cancelled.set()
        if running.is_async and running.job is not None:
            running.job.cancel()
        self.counts["lost"] += 1
        log.warning("task %s (%s): stopping, %s", task_id, running.ctx.kind, why)

    async def _execute(self, running: _Running) -> None:
        ctx = running.ctx
        try:
            func = self.registry.get(ctx.kind)
            if func is None:
                if running.settle():
                    await self._report_fail(
                        running, f"no handler for kind {ctx.kind!r} in this worker", retryable=False
                    )
                return
            outcome, value = await self._call(func, running)
            # The events first: whoever watches the task's stream sees them all before its end.
            await asyncio.to_thread(ctx.close_events)
            if not running.settle():
                return  # cancelled, lease lost, or handed back: the result is not ours to report
            if outcome == "parked":
                self.counts["parked"] += 1
                log.info("task %s (%s) parked until a human decides", ctx.id, ctx.kind)
            elif outcome == "ok":
                await self._report_complete(running, value)
            else:
                await self._report_fail(running, value, retryable=outcome == "retry")
        except asyncio.CancelledError:
            if not running.settled:
                raise
        finally:
            self._forget(ctx.id)

    async def _call(self, func: Handler, running: _Running) -> tuple[str, Any]:
        ctx = running.ctx
        try:
            with _task_span(ctx):
                if _is_async(func):
                    running.is_async = True
                    return "ok", await func(ctx)
                call = contextvars.copy_context().run  # the handler's thread sees the task's span
                value = await asyncio.get_running_loop().run_in_executor(self._pool, call, func, ctx)
                if inspect.isawaitable(value):
                    running.is_async = True
                    value = await value
                return "ok", value
        except AwaitingApproval:
            return "parked", None
        except RetryableError as exc:
            return "retry", f"{exc.__class__.__name__}: {exc}"
        except (PermanentError, TaskCancelled) as exc:
            return "error", f"{exc.__class__.__name__}: {exc}"
        except Exception as exc:
            log.exception("task %s (%s): the handler raised", ctx.id, ctx.kind)
            return "error", "".join(traceback.format_exception_only(exc)).strip()

    async def _report_complete(self, running: _Running, result: Any) -> None:
        ctx = running.ctx
        try:
            extra: dict[str, Any] = {"wait_for_children": True} if ctx.waits_for_children else {}
            if ctx.usage:
                extra["usage"] = ctx.usage
            await self._report(self.client.complete, running, result=result, **extra)
        except (TypeError, ValueError) as exc:  # raised while encoding: nothing was sent
            error = f"the handler's result is not JSON: {exc.__class__.__name__}: {exc}"
            await self._report_fail(running, error, retryable=False)
            return
        except ProtocolError as exc:
            if exc.status in (400, 413):  # a result too large, say: no retry makes it fit
                await self._report_fail(running, f"the server refused the result: {exc}", retryable=False)
            else:
                self._report_error(running, "the result", exc)
            return
        self.counts["succeeded"] += 1
        log.info("task %s (%s) succeeded", ctx.id, ctx.kind)

    async def _report_fail(
        self, running: _Running, error: str, *, retryable: bool, retry_for: float | None = None, count: str = "failed"
    ) -> None:
        ctx = running.ctx
        try:
            extra: dict[str, Any] = {"usage": ctx.usage} if ctx.usage else {}
            await self._report(
                self.client.fail, running, retry_for=retry_for, error=error, retryable=retryable, **extra
            )
        except ProtocolError as exc:
            self._report_error(running, "the failure", exc)
            return
        self.counts[count] += 1
        log.info("task %s (%s) failed (retryable=%s): %s", ctx.id, ctx.kind, retryable, error)

    def _report_error(self, running: _Running, what: str, exc: ProtocolError) -> None:
        if isinstance(exc, LeaseLostError):
            self.counts["lost"] += 1
            log.warning("task %s: %s was not recorded, %s", running.ctx.id, what, exc)
        elif isinstance(exc, KeyRejectedError):
            self._reject(exc)
        else:
            log.error("task %s: could not report %s: %s", running.ctx.id, what, exc)

    async def _report(
        self, call: Callable[..., Any], running: _Running, *, retry_for: float | None = None, **body: Any
    ) -> Any:
        """One report, retried with backoff while the server is unavailable, for up to a lease by
        default: by then the task has gone back to the queue and the report would be refused anyway."""
        ctx = running.ctx
        deadline = time.monotonic() + (self.lease_seconds if retry_for is None else retry_for)
        backoff = self._backoff()
        while True:
            try:
                return await asyncio.to_thread(call, ctx.id, attempt=ctx.attempt, **body)
            except ServerUnavailableError as exc:
                delay = backoff.next_delay(exc.retry_after)
                if time.monotonic() + delay > deadline:
                    raise
                log.debug("task %s: report, next try in %.1fs", ctx.id, delay)
                await asyncio.sleep(delay)


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop without waiting on a handler that swallows its cancellation."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@contextlib.contextmanager
def _task_span(ctx: TaskContext) -> Iterator[None]:
    """Run the handler in a span whose parent is the submission's traceparent, when OpenTelemetry is set up.

    Without a configured tracer provider the OpenTelemetry API hands out no-op spans, so this costs nothing.
    """
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:  # opentelemetry-api is optional for the worker (the "tracing" extra)
        yield
        return
    parent = TraceContextTextMapPropagator().extract({"traceparent": ctx.traceparent}) if ctx.traceparent else None
    tracer = trace.get_tracer("symphony_agent")
    attributes = {"symphony.task.id": ctx.id, "symphony.task.kind": ctx.kind, "symphony.task.attempt": ctx.attempt}
    with tracer.start_as_current_span(
        f"task {ctx.kind}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield
