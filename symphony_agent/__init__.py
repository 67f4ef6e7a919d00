"""symphony_agent: a small client of Symphony's agent protocol that runs your handlers.

It depends only on ``requests`` (and, optionally, ``opentelemetry-api``), not on Django, so it can run
anywhere an agent runs. See docs/agents.md::

    from symphony_agent import Worker, ProtocolClient, handler

    @handler("summarize")
    def summarize(ctx):
        return {"summary": call_my_llm(ctx.input["text"])}

    Worker(ProtocolClient(url, key), concurrency=4).run()
"""

from symphony_agent.client import LeaseLostError, ProtocolClient, ProtocolError
from symphony_agent.handlers import (
    DEFAULT_REGISTRY,
    HandlerRegistry,
    PermanentError,
    RetryableError,
    TaskCancelled,
    TaskContext,
    handler,
)
from symphony_agent.worker import Worker

__all__ = [
    "DEFAULT_REGISTRY",
    "HandlerRegistry",
    "LeaseLostError",
    "PermanentError",
    "ProtocolClient",
    "ProtocolError",
    "RetryableError",
    "TaskCancelled",
    "TaskContext",
    "Worker",
    "handler",
]
__version__ = "0.1.0"
