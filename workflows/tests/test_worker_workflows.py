"""The real worker (symphony_agent) running the demo workflow handlers against a live server."""

from __future__ import annotations

import pytest
from symphony_agent import HandlerRegistry, ProtocolClient, Worker, demo

from agents.models import Task
from agents.tests.test_worker import run_in_thread, wait_for
from workflows.models import Approval, WorkflowRun
from workflows.tests.helpers import submit

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.postgres]


def test_the_worker_fans_out_to_children_fans_in_over_upstream_and_asks_for_approval(
    live_server, make_agent, make_api, operator_api, orchestra
):
    worker = make_agent(orchestra=orchestra)
    runner = Worker(
        ProtocolClient(live_server.url, worker.key), registry=demo.register(HandlerRegistry()), concurrency=4,
        poll_interval=0.05,
    )  # fmt: skip
    thread = run_in_thread(runner)
    try:
        steps = [
            {"key": "split", "kind": "split_words", "input": {"text": "one two\nthree\nfour five six"}},
            {"key": "extra", "kind": "word_count", "input": {"text": "seven"}},
            {"key": "total", "kind": "sum_words", "depends_on": ["split", "extra"]},
        ]
        run_id = submit(operator_api, orchestra, steps).json()["id"]
        wait_for(lambda: WorkflowRun.objects.get(pk=run_id).status != "running")
        total = Task.objects.get(workflow=run_id, step_key="total")
        assert total.status == "succeeded" and total.result == {"words": 7}
        assert Task.objects.filter(workflow=run_id, parent__isnull=False, status="succeeded").count() == 3

        task_id = operator_api.post(
            "/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "guarded_delete", "input": {"paths": ["/tmp/x"]}}
        ).json()["id"]
        approval = wait_for(lambda: Approval.objects.filter(task_id=task_id, status="pending").first())
        make_api("admin").post(f"/api/v1/approvals/{approval.pk}/approve/", {"comment": "ok"})
        done = wait_for(lambda: Task.objects.filter(pk=task_id, status="succeeded").first())
        assert done.result["deleted"] is True
        assert runner.counts["parked"] == 1
    finally:
        runner.stop()
        thread.join(30)
