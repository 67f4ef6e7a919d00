"""Demo handlers (``echo``, ``word_count``, ``sleep``, and the workflow examples ``split_words`` (fan-out
to child tasks), ``sum_words`` (fan-in over ``upstream``) and ``guarded_delete`` (mid-task approval)),
registered only when asked: ``--demo``.

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


def split_words(ctx: TaskContext) -> dict[str, int]:
    """Fan out: one ``word_count`` child task per line of ``input.text``, then wait for them all."""
    text = ctx.input.get("text") if isinstance(ctx.input, dict) else None
    if not isinstance(text, str):
        raise PermanentError("split_words needs input.text, a string")
    lines = [line for line in text.splitlines() if line.strip()][:100]
    ctx.create_children([{"kind": "word_count", "input": {"text": line}} for line in lines])
    ctx.wait_for_children()
    return {"parts": len(lines)}


def sum_words(ctx: TaskContext) -> dict[str, int]:
    """Fan in: add up the ``words`` of every upstream step's result (and of their children's results)."""
    total = 0
    for result in ctx.upstream.values():
        if isinstance(result, dict):
            total += int(result.get("words", 0))
            for child in result.get("children_results", []):
                total += int((child.get("result") or {}).get("words", 0))
    return {"words": total}


def guarded_delete(ctx: TaskContext) -> dict[str, Any]:
    """Ask a human before a destructive step (the mid-task approval pattern); act on the decision."""
    ctx.ask_approval("Delete the files listed in input.paths?", {"paths": (ctx.input or {}).get("paths", [])})
    return {"deleted": ctx.approval["decision"] == "approved", "decided_by": ctx.approval["decided_by"]}


HANDLERS = {
    "echo": echo,
    "word_count": word_count,
    "sleep": sleep,
    "split_words": split_words,
    "sum_words": sum_words,
    "guarded_delete": guarded_delete,
}


def register(registry: HandlerRegistry) -> HandlerRegistry:
    """Add the demo handlers to ``registry`` (kinds already there keep their handler) and return it."""
    for kind, func in HANDLERS.items():
        if registry.get(kind) is None:
            registry.register(kind, func)
    return registry
