"""Task handlers: one callable per task kind, registered by name. Three demo handlers ship here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[["TaskContext"], Any]


class RetryableError(Exception):
    """Raise from a handler for a failure worth another attempt (rate limit, timeout): fail, retryable."""


class PermanentError(Exception):
    """Raise from a handler for a failure no retry will fix (bad input): fail, not retryable."""


class TaskCancelled(Exception):
    """Raised by ``TaskContext.check_cancelled()`` once the task was cancelled or its lease was lost."""


@dataclass
class TaskContext:
    """What a handler gets: the task's fields and a cancellation event to honour in long work."""

    id: int
    kind: str
    input: Any
    attempt: int
    traceparent: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)

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

    def __call__(self, kind: str) -> Callable[[Handler], Handler]:
        """Decorator form: ``@registry("kind")``."""
        return lambda func: self.register(kind, func)


DEFAULT_REGISTRY = HandlerRegistry()


def handler(kind: str, registry: HandlerRegistry | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``kind`` (in the default registry)."""
    return (registry or DEFAULT_REGISTRY)(kind)


# --- demo handlers --------------------------------------------------------------------------------

MAX_SLEEP_SECONDS = 3600


@handler("echo")
def echo(ctx: TaskContext) -> Any:
    """Return the input unchanged."""
    return ctx.input


@handler("word_count")
def word_count(ctx: TaskContext) -> dict[str, int]:
    """Count words, lines and characters of ``input.text``."""
    text = ctx.input.get("text") if isinstance(ctx.input, dict) else None
    if not isinstance(text, str):
        raise PermanentError("word_count needs input.text, a string")
    return {"words": len(text.split()), "lines": len(text.splitlines()), "characters": len(text)}


@handler("sleep")
def sleep(ctx: TaskContext) -> dict[str, float]:
    """Sleep ``input.seconds`` (at most an hour), stopping early if the task is cancelled."""
    seconds = ctx.input.get("seconds", 1) if isinstance(ctx.input, dict) else 1
    if not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise PermanentError(f"sleep needs input.seconds between 0 and {MAX_SLEEP_SECONDS}")
    if ctx.cancelled.wait(seconds):
        ctx.check_cancelled()
    return {"slept": seconds}
