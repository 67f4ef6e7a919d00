"""The real worker against a live server: run_agent end to end, SIGTERM hand-back, SIGKILL recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from symphony_agent import HandlerRegistry, PermanentError, ProtocolClient, RetryableError, Worker, demo

from agents.models import Task
from agents.tests.factories import TaskFactory

# live_server serves from another thread: SQLite's in-memory test database locks tables across threads,
# so these run on PostgreSQL (the CI runs them; the SQLite suite skips them).
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.postgres]
ROOT = Path(settings.BASE_DIR)


def wait_for(predicate, timeout: float = 30.0):
    """Wait for a condition the worker process brings about (not for time to pass)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def start_run_agent(url: str, key: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "SYMPHONY_AGENT_KEY": key}
    cmd = [sys.executable, "manage.py", "run_agent", "--url", url, "--demo", "--poll-interval", "0.1", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def status_of(task: Task) -> str:
    task.refresh_from_db()
    return task.status


def test_it_runs_an_echo_task_end_to_end_with_run_agent(live_server, make_agent, operator_api, orchestra):
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    process = start_run_agent(live_server.url, worker.key)
    try:
        r = operator_api.post(
            "/api/v1/tasks/",
            {"orchestra": orchestra.pk, "kind": "echo", "input": {"say": "hi"}, "required_capabilities": ["echo"]},
        )
        task = Task.objects.get(pk=r.json()["id"])
        wait_for(lambda: status_of(task) == "succeeded")
        assert task.result == {"say": "hi"}
        assert task.attempts == 1
        wait_for(lambda: type(worker.agent).objects.get(pk=worker.agent.pk).last_heartbeat_at)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "worker stopped" in output
    assert worker.key not in output


def test_it_hands_back_unfinished_work_on_sigterm(live_server, make_agent, orchestra):
    worker = make_agent(capabilities=["sleep"], orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, kind="sleep", input={"seconds": 600}, required_capabilities=["sleep"])
    process = start_run_agent(live_server.url, worker.key, "--grace-seconds", "0")
    try:
        wait_for(lambda: status_of(task) == "running")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    task.refresh_from_db()
    assert task.status == "pending"  # back in the queue at once, not after the lease
    assert "handed back" in task.error
    assert task.lease_expires_at is None


def test_it_recovers_the_task_of_a_worker_killed_mid_task(live_server, make_agent, orchestra):
    doomed = make_agent(capabilities=["sleep"], orchestra=orchestra)
    survivor = make_agent(capabilities=["sleep"], orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, kind="sleep", input={"seconds": 600}, required_capabilities=["sleep"])
    process = start_run_agent(live_server.url, doomed.key, "--lease-seconds", "30")
    try:
        wait_for(lambda: status_of(task) == "running")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert task.agent == doomed.agent
    # Nobody else gets it while the lease runs...
    assert survivor.api.post("/api/v1/agent/claim/").json()["tasks"] == []
    # ...and once it has expired, the next claim takes it back and completes it once.
    with time_machine.travel(task.lease_expires_at + timedelta(seconds=1)):
        [claimed] = survivor.api.post("/api/v1/agent/claim/").json()["tasks"]
        assert (claimed["id"], claimed["attempt"]) == (task.pk, 2)
        r = survivor.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": {"slept": 0}, "attempt": 2})
        assert r.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.attempts, task.agent) == ("succeeded", 2, survivor.agent)
    assert task.attempt_set.filter(outcome="expired", agent=doomed.agent).count() == 1


def test_it_reports_handler_outcomes(live_server, make_agent, orchestra):
    registry = HandlerRegistry()

    @registry("ok")
    def ok(ctx):
        return {"doubled": ctx.input["n"] * 2}

    @registry("flaky")
    def flaky(ctx):
        raise RetryableError("upstream timed out")

    @registry("bad")
    def bad(ctx):
        raise PermanentError("input is nonsense")

    @registry("bug")
    def bug(ctx):
        return 1 / 0

    worker = make_agent(orchestra=orchestra)
    tasks = {kind: TaskFactory(orchestra=orchestra, kind=kind, input={"n": 21}, max_attempts=1)
             for kind in ("ok", "flaky", "bad", "bug", "unknown")}  # fmt: skip
    runner = Worker(ProtocolClient(live_server.url, worker.key), registry=registry, concurrency=3, poll_interval=0.05)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_for(lambda: all(status_of(t) in Task.FINISHED for t in tasks.values()))
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert tasks["ok"].result == {"doubled": 42}
    assert tasks["ok"].status == "succeeded"
    assert tasks["flaky"].status == "failed"  # retryable, but max_attempts=1
    assert "upstream timed out" in tasks["flaky"].error
    assert "input is nonsense" in tasks["bad"].error
    assert "ZeroDivisionError" in tasks["bug"].error
    assert "no handler for kind 'unknown'" in tasks["unknown"].error


def test_it_stops_a_cancelled_task_on_the_next_heartbeat(live_server, make_agent, operator_api, orchestra):
    worker = make_agent(capabilities=["sleep"], orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, kind="sleep", input={"seconds": 600})
    registry = demo.register(HandlerRegistry())
    runner = Worker(
        ProtocolClient(live_server.url, worker.key), registry=registry, poll_interval=0.05, heartbeat_interval=0.1
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_for(lambda: status_of(task) == "running")
        operator_api.post(f"/api/v1/tasks/{task.pk}/cancel/")
        wait_for(lambda: runner.running_count() == 0)
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert runner.counts["lost"] == 1
    assert status_of(task) == "cancelled"


def test_it_keeps_the_lease_alive_while_working(live_server, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    registry = HandlerRegistry()
    release = threading.Event()
    registry.register("wait", lambda ctx: release.wait(30) and "done")
    task = TaskFactory(orchestra=orchestra, kind="wait")
    runner = Worker(ProtocolClient(live_server.url, worker.key), registry=registry, poll_interval=0.05, lease_seconds=1)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        first = wait_for(lambda: status_of(task) == "running" and task.lease_expires_at)
        wait_for(lambda: status_of(task) == "running" and task.lease_expires_at > first)
    finally:
        release.set()
        wait_for(lambda: status_of(task) == "succeeded")
        runner.stop()
        thread.join(timeout=30)
    assert task.attempts == 1
    assert task.result == "done"


def run_in_thread(runner: Worker) -> threading.Thread:
    thread = threading.Thread(target=runner.run, name="test-worker")
    thread.start()
    return thread


def test_it_runs_async_handlers_concurrently_on_one_loop(live_server, make_agent, orchestra):
    registry = HandlerRegistry()
    arrived: list[int] = []
    loops: set[int] = set()

    @registry("gather")
    async def gather(ctx):
        # Done only once all three run at the same time: each waits for the others to arrive.
        arrived.append(ctx.id)
        loops.add(id(asyncio.get_running_loop()))
        async with asyncio.timeout(20):
            while len(arrived) < 3:
                await asyncio.sleep(0.01)
        return {"seen": len(arrived)}

    worker = make_agent(orchestra=orchestra)
    tasks = [TaskFactory(orchestra=orchestra, kind="gather") for _ in range(3)]
    runner = Worker(ProtocolClient(live_server.url, worker.key), registry=registry, concurrency=3, poll_interval=0.05)
    thread = run_in_thread(runner)
    try:
        wait_for(lambda: all(status_of(t) in Task.FINISHED for t in tasks))
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert [(t.status, t.result) for t in tasks] == [("succeeded", {"seen": 3})] * 3
    assert len(loops) == 1  # one event loop: an async client made once serves every task


def test_it_runs_sync_handlers_in_as_many_threads_as_its_concurrency(live_server, make_agent, orchestra):
    registry = HandlerRegistry()
    barrier = threading.Barrier(2, timeout=20)
    registry.register("meet", lambda ctx: barrier.wait() is not None and threading.current_thread().name)
    worker = make_agent(orchestra=orchestra)
    tasks = [TaskFactory(orchestra=orchestra, kind="meet") for _ in range(2)]
    runner = Worker(ProtocolClient(live_server.url, worker.key), registry=registry, concurrency=2, poll_interval=0.05)
    thread = run_in_thread(runner)
    try:
        wait_for(lambda: all(status_of(t) in Task.FINISHED for t in tasks))
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert [t.status for t in tasks] == ["succeeded", "succeeded"]
    assert len({t.result for t in tasks}) == 2
    assert all(t.result.startswith("symphony-task") for t in tasks)


def test_it_cancels_an_async_handler_when_extending_its_lease_is_refused(
    live_server, make_agent, operator_api, orchestra
):
    registry = HandlerRegistry()
    started, stopped = threading.Event(), threading.Event()

    @registry("long")
    async def long(ctx):
        started.set()
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, kind="long")
    # Heartbeats far apart: the refused extension (409, the task was cancelled) is what tells the handler.
    runner = Worker(
        ProtocolClient(live_server.url, worker.key),
        registry=registry,
        poll_interval=0.05,
        heartbeat_interval=600,
        lease_seconds=1,
    )
    thread = run_in_thread(runner)
    try:
        wait_for(started.is_set)
        assert operator_api.post(f"/api/v1/tasks/{task.pk}/cancel/").status_code == 200
        wait_for(stopped.is_set)
        wait_for(lambda: runner.running_count() == 0)
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert runner.counts["lost"] == 1
    assert status_of(task) == "cancelled"


def test_it_fails_a_task_whose_result_is_not_json(live_server, make_agent, orchestra):
    registry = HandlerRegistry()
    registry.register("odd", lambda ctx: {"when": {1, 2}})
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, kind="odd", max_attempts=1)
    runner = Worker(ProtocolClient(live_server.url, worker.key), registry=registry, poll_interval=0.05)
    thread = run_in_thread(runner)
    try:
        wait_for(lambda: status_of(task) in Task.FINISHED)
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert task.status == "failed"
    assert "the handler's result is not JSON: TypeError" in task.error


def test_a_worker_without_demo_fails_a_demo_task_instead_of_echoing_it(live_server, make_agent, orchestra):
    registry = HandlerRegistry()
    registry.register("mine", lambda ctx: "ok")
    worker = make_agent(capabilities=["echo"], orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, kind="echo", input={"secret": "s"}, required_capabilities=["echo"])
    runner = Worker(ProtocolClient(live_server.url, worker.key), registry=registry, poll_interval=0.05)
    thread = run_in_thread(runner)
    try:
        wait_for(lambda: status_of(task) in Task.FINISHED)
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert (task.status, task.result) == ("failed", None)
    assert "no handler for kind 'echo'" in task.error


class CountingClient(ProtocolClient):
    """The real client; counts the event requests it sends (to see that events go in batches)."""

    event_posts = 0

    def task_post(self, task_id, action, **kwargs):
        if action == "events":
            type(self).event_posts += 1
        return super().task_post(task_id, action, **kwargs)


def test_handlers_stream_progress_logs_and_output_in_batches_all_sent_before_the_end(
    live_server, make_agent, orchestra
):
    from agents.models import TaskEvent

    registry = HandlerRegistry()
    seen_live = threading.Event()

    @registry("chatty")
    def chatty(ctx):
        ctx.progress(0, "starting")
        for i in range(250):
            ctx.log(f"line {i}", level="debug", i=i)
        ctx.output("Hello, ")
        ctx.output("world")
        ctx.progress(100)
        return {"lines": 250}

    @registry("slow")
    async def slow(ctx):
        ctx.progress(50, "half way")  # not enough for a full batch: sent after the interval, task still running
        await asyncio.to_thread(seen_live.wait, 20)
        return {"seen": seen_live.is_set()}

    worker = make_agent(orchestra=orchestra)
    chatty_task = TaskFactory(orchestra=orchestra, kind="chatty")
    slow_task = TaskFactory(orchestra=orchestra, kind="slow")
    runner = Worker(CountingClient(live_server.url, worker.key), registry=registry, concurrency=2, poll_interval=0.05)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_for(lambda: TaskEvent.objects.filter(task=slow_task).exists())
        assert status_of(slow_task) == "running"
        seen_live.set()
        wait_for(lambda: status_of(chatty_task) in Task.FINISHED and status_of(slow_task) in Task.FINISHED)
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert (chatty_task.status, slow_task.status) == ("succeeded", "succeeded")
    assert slow_task.result == {"seen": True}
    events = list(TaskEvent.objects.filter(task=chatty_task).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, 255))
    assert events[0].type == "progress" and events[0].data == {"percent": 0, "message": "starting"}
    assert [e.data["i"] for e in events[1:251]] == list(range(250))
    assert events[1].data == {"level": "debug", "message": "line 0", "i": 0}
    assert [e.data for e in events[251:]] == [{"text": "Hello, "}, {"text": "world"}, {"percent": 100}]
    assert all(e.created_at <= chatty_task.finished_at for e in events)
    # 254 + 1 events, batches of at most 100: a handful of requests, not one per call.
    assert 3 <= CountingClient.event_posts <= 8
