"""symphony_agent: runs tasks for one Symphony agent with your handlers.

It depends only on ``requests`` (and, optionally, ``opentelemetry-api``), not on Django, so it runs
anywhere an agent runs: ``pip install symphony-agent``, then ``symphony-agent --help``. See docs/agents.md::

    from symphony_agent import Worker, ProtocolClient, handler

    @handler("summarize")
    async def summarize(ctx):
        return {"summary": await call_my_llm(ctx.input["text"])}

    Worker(ProtocolClient(url, key), concurrency=4).run()
"""

# Before the imports: the client puts it in its User-Agent; pyproject.toml reads it for the wheel.
__version__ = "0.2.0"

from symphony_agent.client import (
    Backoff,
    KeyRejectedError,
    LeaseLostError,
    ProtocolClient,
    ProtocolError,
    ServerUnavailableError,
)
from symphony_agent.events import EventBatcher
from symphony_agent.handlers import (
    DEFAULT_REGISTRY,
    AwaitingApproval,
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
    "AwaitingApproval",
    "Backoff",
    "EventBatcher",
    "HandlerRegistry",
    "KeyRejectedError",
    "LeaseLostError",
    "PermanentError",
    "ProtocolClient",
    "ProtocolError",
    "RetryableError",
    "ServerUnavailableError",
    "TaskCancelled",
    "TaskContext",
    "Worker",
    "__version__",
    "handler",
]
