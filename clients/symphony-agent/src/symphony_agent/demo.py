"""Demo handlers (``echo``, ``word_count``, ``sleep``), registered only when asked: ``--demo``.

A production worker runs only the handlers it was given, so a stray ``echo`` task can never make it
hand a task's input back as its result.
"""

from __future__ import annotations

from typing import Any

from symphony_agent.handlers import HandlerRegistry, PermanentError, TaskContext

MAX_SLEEP_SECONDS = 3600


def echo(ctx: TaskContext) -> Any:
    """Return the input unchanged."""
    return ctx.input


def word_count(ctx: TaskContext) -> dict[str, int]:
    """Count words, lines and characters of ``input.text``."""
    text = ctx.input.get("text") if isinstance(ctx.input, dict) else None
    if not isinstance(text, str):
        raise PermanentError("word_count needs input.text, a string")
    return {"words": len(text.split()), "lines": len(text.splitlines()), "characters": len(text)}


def sleep(ctx: TaskContext) -> dict[str, float]:
    """Sleep ``input.seconds`` (at most an hour), stopping early if the task is cancelled."""
    seconds = ctx.input.get("seconds", 1) if isinstance(ctx.input, dict) else 1
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise PermanentError(f"sleep needs input.seconds between 0 and {MAX_SLEEP_SECONDS}")
    if ctx.cancelled.wait(seconds):
        ctx.check_cancelled()
    return {"slept": seconds}


HANDLERS = {"echo": echo, "word_count": word_count, "sleep": sleep}


def register(registry: HandlerRegistry) -> HandlerRegistry:
    """Add the demo handlers to ``registry`` (kinds already there keep their handler) and return it."""
    for kind, func in HANDLERS.items():
        if registry.get(kind) is None:
            registry.register(kind, func)
    return registry
