"""A handler for an OpenAI-compatible chat completion endpoint: vLLM, Ollama, llama.cpp's server, OpenAI.

The task's input is ``{"prompt": "..."}`` (with an optional ``"system"``) or ``{"messages": [{"role",
"content"}, ...]}``, plus optional ``max_tokens`` and ``temperature``. The handler streams the answer
(``stream: true``, server-sent events), stops as soon as the task is cancelled (closing the connection,
which stops the generation on the model server), and returns::

    {"content": "...", "model": "...", "finish_reason": "stop", "usage": {"prompt_tokens": 9, ...}}

The endpoint and the model come from ``ChatSettings`` (``ChatSettings.from_env()`` reads
``SYMPHONY_CHAT_BASE_URL``, ``SYMPHONY_CHAT_MODEL``, ``SYMPHONY_CHAT_API_KEY`` and
``SYMPHONY_CHAT_TIMEOUT``). ``symphony_agent.examples.chat`` registers it as kind ``chat``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from symphony_agent.handlers import PermanentError, RetryableError, TaskCancelled, TaskContext

log = logging.getLogger(__name__)

#: Ollama's OpenAI-compatible endpoint on its default port; vLLM serves ``http://HOST:8000/v1``.
DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"
RETRYABLE_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class ChatSettings:
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChatSettings:
        """Read the ``SYMPHONY_CHAT_*`` variables. Raises ``ValueError`` naming the one that is missing or bad."""
        environ = os.environ if environ is None else environ
        model = environ.get("SYMPHONY_CHAT_MODEL", "").strip()
        if not model:
            raise ValueError("set SYMPHONY_CHAT_MODEL to the model the endpoint serves (e.g. llama3.2)")
        timeout = environ.get("SYMPHONY_CHAT_TIMEOUT", "300")
        try:
            seconds = float(timeout)
        except ValueError:
            raise ValueError(f"SYMPHONY_CHAT_TIMEOUT must be a number of seconds, not {timeout!r}") from None
        return cls(
            base_url=(environ.get("SYMPHONY_CHAT_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            model=model,
            api_key=environ.get("SYMPHONY_CHAT_API_KEY", ""),
            timeout=seconds,
        )


def publish_delta(ctx: TaskContext, text: str) -> None:
    """Each streamed piece of the answer, as it arrives, becomes an ``output`` event of the task (batched
    by the worker), so a watcher of ``GET /api/v1/tasks/{id}/stream/`` sees the tokens come."""
    ctx.output(text)


def report_usage(ctx: TaskContext, usage: dict[str, Any]) -> None:
    """The answer's token counts, reported to the server's usage accounting with the task's completion
    (``GET /api/v1/usage/``, budgets). A local model has no price: the cost is 0."""
    ctx.report_usage(
        str(usage.get("model") or "unknown"),
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )


def chat_handler(
    settings: ChatSettings,
    *,
    on_delta: Callable[[TaskContext, str], None] = publish_delta,
    on_usage: Callable[[TaskContext, dict[str, Any]], None] = report_usage,
    session: requests.Session | None = None,
) -> Callable[[TaskContext], dict[str, Any]]:
    """A handler (a plain function: it runs in one of the worker's threads) for ``settings``' endpoint."""
    http = session or requests.Session()

    def chat(ctx: TaskContext) -> dict[str, Any]:
        body = {"model": settings.model, "messages": messages_of(ctx.input), "stream": True}
        body["stream_options"] = {"include_usage": True}
        for name in ("max_tokens", "temperature"):
            if isinstance(ctx.input, dict) and name in ctx.input:
                body[name] = ctx.input[name]
        headers = {"Accept": "text/event-stream"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        try:
            response = http.post(
                f"{settings.base_url}/chat/completions",
                json=body,
                headers=headers,
                stream=True,
                timeout=(10, settings.timeout),
            )
        except requests.RequestException as exc:
            raise RetryableError(f"the model server did not answer: {exc.__class__.__name__}: {exc}") from exc
        with response:
            _check_status(response)
            result = _read_stream(ctx, response, on_delta)
        if result["usage"] is not None:
            on_usage(ctx, {"model": result.get("model") or settings.model, **result["usage"]})
        return result

    return chat


def messages_of(value: Any) -> list[dict[str, str]]:
    """The chat messages of a task's input. Raises ``PermanentError`` naming the field that is wrong."""
    if not isinstance(value, dict):
        raise PermanentError("chat needs input.prompt (a string) or input.messages (a list)")
    if "messages" in value:
        messages = value["messages"]
        if not isinstance(messages, list) or not messages:
            raise PermanentError("input.messages must be a non-empty list of {role, content}")
        for i, message in enumerate(messages):
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise PermanentError(f"input.messages[{i}] must be an object with string role and content")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt = value.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise PermanentError("chat needs input.prompt (a string) or input.messages (a list)")
    system = value.get("system")
    if system is not None and not isinstance(system, str):
        raise PermanentError("input.system must be a string")
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def _check_status(response: requests.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    text = f"the model server answered {response.status_code}: {message or response.reason}"
    raise (RetryableError if response.status_code in RETRYABLE_STATUSES else PermanentError)(text)


def _read_stream(
    ctx: TaskContext, response: requests.Response, on_delta: Callable[[TaskContext, str], None]
) -> dict[str, Any]:
    pieces: list[str] = []
    result: dict[str, Any] = {"content": "", "model": None, "finish_reason": None, "usage": None}
    try:
        for data in sse_data(response.iter_lines()):
            if ctx.cancelled.is_set():
                raise TaskCancelled(f"task {ctx.id} was cancelled mid-answer")
            if data == "[DONE]":
                break
            chunk = _chunk(data)
            result["model"] = chunk.get("model") or result["model"]
            result["usage"] = chunk.get("usage") or result["usage"]
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                text = (choice.get("delta") or {}).get("content")
                if text:
                    pieces.append(text)
                    on_delta(ctx, text)
                result["finish_reason"] = choice.get("finish_reason") or result["finish_reason"]
    except requests.RequestException as exc:  # the stream broke off: the answer is incomplete
        raise RetryableError(f"the answer stream broke off: {exc.__class__.__name__}: {exc}") from exc
    result["content"] = "".join(pieces)
    log.debug("task %s: %d pieces, finish_reason %s", ctx.id, len(pieces), result["finish_reason"])
    return result


def _chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise PermanentError(f"the model server sent a chunk that is not JSON: {data[:200]!r}") from None
    if not isinstance(chunk, dict):
        raise PermanentError(f"the model server sent a chunk that is not an object: {data[:200]!r}")
    error = chunk.get("error")
    if error:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RetryableError(f"the model server failed mid-answer: {message}")
    return chunk


def sse_data(lines: Iterator[bytes]) -> Iterator[str]:
    """The ``data`` of each server-sent event (``data:`` lines joined by newlines; comments and other
    fields skipped), decoded as UTF-8 whatever charset the response claims."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
