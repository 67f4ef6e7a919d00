"""Task handlers: one callable per task kind, registered by name; and the context each one gets."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from symphony_agent.events import EventBatcher

if TYPE_CHECKING:
    from symphony_agent.client import ProtocolClient

#: A handler takes the task's context and returns JSON-serialisable data; ``async def`` handlers too.
Handler = Callable[["TaskContext"], Any] | Callable[["TaskContext"], Awaitable[Any]]


class RetryableError(Exception):
    """Raise from a handler for a failure worth another attempt (rate limit, timeout): fail, retryable."""


class PermanentError(Exception):
    """Raise from a handler for a failure no retry will fix (bad input): fail, not retryable."""


class TaskCancelled(Exception):
    """Raised by ``TaskContext.check_cancelled()`` once the task was cancelled or its lease was lost."""


class AwaitingApproval(Exception):
    """Raised by ``TaskContext.ask_approval()``: the task is parked server-side until a human decides.

    Let it propagate: the worker then reports nothing (the lease is already released) and the task
    comes back in a later claim with ``ctx.approval`` set to the decision.
    """


@dataclass
class TaskContext:
    """What a handler gets: the task as claimed, and the signal that it should stop.

    ``cancelled`` is set when the task is cancelled, its lease moves on, or the worker stops past its
    grace period. Sync handlers poll it (``check_cancelled()``, ``cancelled.wait(seconds)``); ``async def``
    handlers are also cancelled outright (``asyncio.CancelledError`` at their next ``await``).

    Calls a handler makes about its own task go to the server through ``_client.task_post(self.id,
    action, attempt=self.attempt, ...)``, so each is about this attempt only. ``progress()``, ``log()``
    and ``output()`` add live events, batched by an ``EventBatcher`` (never blocking the handler).
    """

    id: int
    kind: str
    input: Any
    attempt: int
    traceparent: str = ""
    #: The whole task as the claim returned it (priority, lease_expires_at, ...).
    task: dict[str, Any] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    _client: ProtocolClient | None = field(default=None, repr=False, compare=False)
    _events: EventBatcher | None = field(default=None, repr=False, compare=False)
    #: Set by ``wait_for_children()``: the completion then waits for every child task.
    waits_for_children: bool = False
    #: LLM usage reported by ``report_usage()``, sent with the task's completion or failure.
    usage: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_claim(cls, task: dict[str, Any], client: ProtocolClient | None = None) -> TaskContext:
        return cls(
            id=task["id"],
            kind=task["kind"],
            input=task.get("input"),
            attempt=task["attempt"],
            traceparent=task.get("traceparent") or "",
            task=dict(task),
            _client=client,
        )

    # --- live output: batched, never blocking (symphony_agent.events) --------------------------------

    def progress(self, percent: float | None = None, message: str | None = None, **data: Any) -> None:
        """Report progress (``percent`` 0-100, a ``message``, anything else JSON) to the task's stream."""
        if percent is not None:
            data["percent"] = percent
        if message is not None:
            data["message"] = message
        self._event("progress", data)

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        """A log line for the task's watchers (``level`` debug/info/warning/error, extra JSON ``fields``)."""
        self._event("log", {"level": level, "message": message, **fields})

    def output(self, text: str | None = None, **data: Any) -> None:
        """Partial output (a chunk of ``text``, e.g. LLM tokens as they come, or any JSON fields)."""
        if text is not None:
            data["text"] = text
        self._event("output", data)

    def flush(self) -> None:
        """Send the waiting events now (blocks until sent, or ~10 s while the server is unavailable)."""
        if self._events is not None:
            self._events.flush()

    def close_events(self) -> None:
        """Send what is left and stop batching; the worker calls it before reporting the task's end."""
        if self._events is not None:
            self._events.close()

    def _event(self, type: str, data: dict[str, Any]) -> None:
        if self._events is None:
            if self._client is None:
                return  # a context built by hand (a unit test of a handler): nowhere to send
            self._events = EventBatcher(self._client, self.id, self.attempt)
        self._events.add(type, data)

    def report_usage(
        self, model: str, *, input_tokens: int = 0, output_tokens: int = 0, cost: str = "0", currency: str = "USD"
    ) -> None:
        """Count an LLM call's tokens and cost (a decimal string) against the task: sent once, with its end."""
        self.usage.append(
            {"model": model, "input_tokens": int(input_tokens), "output_tokens": int(output_tokens),
             "cost": str(cost), "currency": currency}
        )  # fmt: skip

    @property
    def upstream(self) -> dict[str, Any]:
        """A workflow step's dependencies' results, by step key (empty for other tasks)."""
        return self.task.get("upstream") or {}

    @property
    def approval(self) -> dict[str, Any] | None:
        """The decision on the approval this task asked for (``decision``, ``decided_by``, ``comment``),
        once it was decided; None before or when it never asked."""
        return self.task.get("approval")

    def create_children(self, children: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create child tasks (``{"kind", "input", ...}`` each) in this task's orchestra and workflow."""
        assert self._client is not None, "create_children needs a worker's client"
        return self._client.task_post(self.id, "children", attempt=self.attempt, children=children)["children"]

    def wait_for_children(self) -> None:
        """Complete as ``waiting`` until every child finished; the task then succeeds with
        ``children_results`` added to its result (or fails if a child did not succeed)."""
        self.waits_for_children = True

    def ask_approval(
        self, question: str, data: dict[str, Any] | None = None, *, approvers: str = "orchestra:control",
        timeout_seconds: int | None = None,
    ) -> None:  # fmt: skip
        """Ask a human mid-task, unless the decision is already here (then return at once: read
        ``ctx.approval``). Otherwise park the task and raise ``AwaitingApproval``."""
        if self.approval is not None:
            return
        assert self._client is not None, "ask_approval needs a worker's client"
        body: dict[str, Any] = {"question": question, "data": data or {}, "approvers": approvers}
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        self._client.task_post(self.id, "approval", attempt=self.attempt, **body)
        raise AwaitingApproval(question)

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled.is_set()

    def check_cancelled(self) -> None:
        """Raise ``TaskCancelled`` when the task was cancelled, its lease lost, or the worker is stopping."""
        if self.cancelled.is_set():
            raise TaskCancelled(f"task {self.id} was cancelled")


class HandlerRegistry:
    """Maps a task kind to its handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, func: Handler) -> Handler:
        self._handlers[kind] = func
        return func

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def __call__(self, kind: str) -> Callable[[Handler], Handler]:
        """Decorator form: ``@registry("kind")``."""
        return lambda func: self.register(kind, func)


#: Where ``@handler`` registers and what the command line runs: modules given with ``--handlers`` fill it.
DEFAULT_REGISTRY = HandlerRegistry()


def handler(kind: str, registry: HandlerRegistry | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function (sync or ``async def``) as the handler of ``kind``."""
    return (registry or DEFAULT_REGISTRY)(kind)
