"""The example chat handler against a loopback server that speaks the OpenAI chat completion protocol."""

from __future__ import annotations

import threading

import pytest
from symphony_agent import HandlerRegistry, PermanentError, ProtocolClient, RetryableError, TaskCancelled, Worker
from symphony_agent.examples.openai_chat import ChatSettings, chat_handler
from symphony_agent.handlers import TaskContext

from agents.flow_models import UsageRecord
from agents.models import Task, TaskEvent
from tests.servers import ChatCompletionsStub, free_port
from tests.workers import wait_for


def context(value: object) -> TaskContext:
    return TaskContext(id=7, kind="chat", input=value, attempt=1)


def test_it_streams_the_answer_and_returns_it_with_the_usage():
    pieces, usages = [], []
    with ChatCompletionsStub() as stub:
        chat = chat_handler(
            ChatSettings(base_url=stub.base_url, model="tiny-llm", api_key="sk-local"),
            on_delta=lambda ctx, text: pieces.append(text),
            on_usage=lambda ctx, usage: usages.append(usage),
        )
        result = chat(context({"prompt": "Say hello", "system": "Be brief.", "max_tokens": 16, "temperature": 0}))
    assert result == {"content": "Hello, world!", "model": "tiny-llm", "finish_reason": "stop", "usage": stub.usage}
    assert pieces == list(stub.tokens)
    assert usages == [{"model": "tiny-llm", **stub.usage}]
    [request] = stub.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-local"
    assert request["body"] == {
        "model": "tiny-llm",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 16,
        "temperature": 0,
    }


def test_it_hands_on_each_piece_as_it_arrives():
    held: list[bool] = []
    with ChatCompletionsStub() as stub:
        stub.hold = True  # the stub sends one token, then waits for release

        def on_delta(ctx: TaskContext, text: str) -> None:
            held.append(not stub.release.is_set())
            stub.release.set()

        result = chat_handler(ChatSettings(base_url=stub.base_url, model="m"), on_delta=on_delta)(
            context({"messages": [{"role": "user", "content": "hi"}]})
        )
    assert held[0] is True  # the first piece came through while the server still held the rest
    assert result["content"] == "Hello, world!"
    assert "Authorization" not in stub.requests[0]["headers"]  # no key configured, none sent


def test_it_stops_reading_and_hangs_up_when_the_task_is_cancelled():
    with ChatCompletionsStub(tokens=tuple("abcdefghijklmnopqrstuvwxyz")) as stub:
        stub.hold = True
        ctx = context({"prompt": "the alphabet, slowly"})

        def on_delta(ctx: TaskContext, text: str) -> None:
            ctx.cancelled.set()  # as the worker does when the server says the task was cancelled
            stub.release.set()

        with pytest.raises(TaskCancelled):
            chat_handler(ChatSettings(base_url=stub.base_url, model="m"), on_delta=on_delta)(ctx)
        assert stub.disconnected.wait(20)  # the model server sees the client go, and can stop generating


@pytest.mark.parametrize(("status", "error"), [(429, RetryableError), (503, RetryableError), (400, PermanentError)])
def test_it_sorts_the_model_servers_refusals_into_retryable_or_not(status, error):
    with ChatCompletionsStub(status=status) as stub, pytest.raises(error, match=f"answered {status}: stub refuses"):
        chat_handler(ChatSettings(base_url=stub.base_url, model="m"))(context({"prompt": "hi"}))


def test_an_unreachable_model_server_is_worth_a_retry():
    chat = chat_handler(ChatSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m"))
    with pytest.raises(RetryableError, match="did not answer"):
        chat(context({"prompt": "hi"}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("just text", "input.prompt"),
        ({"prompt": ""}, "input.prompt"),
        ({"messages": []}, "input.messages must be a non-empty list"),
        ({"messages": [{"role": "user"}]}, r"input.messages\[0\]"),
        ({"prompt": "hi", "system": 3}, "input.system"),
    ],
)
def test_it_refuses_bad_input_naming_the_field(value, message):
    with ChatCompletionsStub() as stub, pytest.raises(PermanentError, match=message):
        chat_handler(ChatSettings(base_url=stub.base_url, model="m"))(context(value))
    assert stub.requests == []


def test_its_settings_come_from_the_environment():
    settings = ChatSettings.from_env(
        {
            "SYMPHONY_CHAT_MODEL": "qwen2.5:0.5b",
            "SYMPHONY_CHAT_BASE_URL": "http://gpu-box:8000/v1/",
            "SYMPHONY_CHAT_API_KEY": "k",
        }
    )
    assert settings == ChatSettings(base_url="http://gpu-box:8000/v1", model="qwen2.5:0.5b", api_key="k", timeout=300.0)
    assert ChatSettings.from_env({"SYMPHONY_CHAT_MODEL": "m"}).base_url == "http://127.0.0.1:11434/v1"
    assert "k" not in repr(settings)
    with pytest.raises(ValueError, match="SYMPHONY_CHAT_MODEL"):
        ChatSettings.from_env({})
    with pytest.raises(ValueError, match="SYMPHONY_CHAT_TIMEOUT"):
        ChatSettings.from_env({"SYMPHONY_CHAT_MODEL": "m", "SYMPHONY_CHAT_TIMEOUT": "long"})


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_a_worker_runs_a_chat_task_end_to_end(live_server, make_agent, operator_api, orchestra):
    worker = make_agent(capabilities=["chat"], orchestra=orchestra)
    with ChatCompletionsStub() as stub:
        registry = HandlerRegistry()
        registry.register("chat", chat_handler(ChatSettings(base_url=stub.base_url, model="tiny-llm")))
        runner = Worker(ProtocolClient(live_server.url, worker.key), registry=registry, poll_interval=0.05)
        thread = threading.Thread(target=runner.run)
        thread.start()
        try:
            r = operator_api.post(
                "/api/v1/tasks/",
                {
                    "orchestra": orchestra.pk,
                    "kind": "chat",
                    "input": {"prompt": "hi"},
                    "required_capabilities": ["chat"],
                },
            )
            assert r.status_code == 201, r.json()
            task = Task.objects.get(pk=r.json()["id"])
            wait_for(lambda: Task.objects.get(pk=task.pk).status in Task.FINISHED)
        finally:
            runner.stop()
            thread.join(timeout=30)
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    assert task.result == {
        "content": "Hello, world!",
        "model": "tiny-llm",
        "finish_reason": "stop",
        "usage": stub.usage,
    }
    # The tokens went out as output events while streaming, and the usage into the server's accounting.
    outputs = TaskEvent.objects.filter(task=task, type="output").order_by("seq").values_list("data", flat=True)
    assert "".join(data["text"] for data in outputs) == "Hello, world!"
    (record,) = UsageRecord.objects.filter(task=task)
    assert (record.model, record.input_tokens, record.output_tokens, record.source) == (
        "tiny-llm",
        stub.usage["prompt_tokens"],
        stub.usage["completion_tokens"],
        "completion",
    )
