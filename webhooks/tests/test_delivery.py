"""Deliveries through a real loopback receiver: signatures (reference verification), retries after a
500 and a timeout, giving up, automatic disabling, redelivery, SSRF at delivery, task events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from agents.services import agent_create, task_claim, task_complete, task_fail, task_submit
from agents.tests.factories import OrchestraFactory, UserFactory
from audit import hooks
from webhooks.models import Delivery, Webhook
from webhooks.services import webhook_create, webhook_rotate_secret

pytestmark = pytest.mark.django_db


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300) -> bool:
    """The Standard Webhooks reference verification, written from the specification: the signed
    content is ``{webhook-id}.{webhook-timestamp}.{body}``, the key the base64 part of ``whsec_...``,
    and any one ``v1,`` signature of the space-separated list may match (constant-time compare)."""
    import time

    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, timestamp = lowered["webhook-id"], lowered["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    for candidate in lowered["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False


def _hook(project: Any, url: str, events: list[str] | None = None) -> tuple[Webhook, str]:
    return webhook_create(actor=None, project=project, url=url, events=events or ["task.*", "workflow.*"])


def _emit(project: Any, event_type: str = "task.succeeded", **data: Any) -> None:
    with transaction.atomic():
        hooks.emit(event_type, project_id=project.pk, data=data or {"task": {"id": 1}})


def _make_due() -> None:
    Delivery.objects.filter(status=Delivery.Status.PENDING).update(next_attempt_at=timezone.now())


def test_a_delivery_verifies_with_the_reference_algorithm(receiver, project_factory, send_due) -> None:
    project = project_factory(slug="alpha")
    _, secret = _hook(project, receiver.url)
    _emit(project, "task.succeeded", task={"id": 7, "status": "succeeded"})
    assert send_due() == 1
    [request] = receiver.requests
    assert verify(secret, request["headers"], request["body"])
    assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), request["headers"], request["body"])
    tampered = request["body"].replace(b"7", b"8")
    assert not verify(secret, request["headers"], tampered)
    body = json.loads(request["body"])
    assert body["type"] == "task.succeeded" and body["data"]["task"]["id"] == 7
    delivery = Delivery.objects.get()
    assert delivery.status == "succeeded" and delivery.attempts == 1
    assert request["headers"]["webhook-id"] == delivery.message_id
    attempt = delivery.attempt_log.get()
    assert attempt.status_code == 200 and attempt.response_excerpt == "status 200"


def test_during_rotation_both_secrets_sign(receiver, project_factory, send_due) -> None:
    project = project_factory(slug="alpha")
    webhook, old = _hook(project, receiver.url)
    new = webhook_rotate_secret(webhook=webhook, actor=None, overlap_seconds=3600)
    _emit(project)
    send_due()
    request = receiver.requests[0]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    assert verify(new, request["headers"], request["body"]) and verify(old, request["headers"], request["body"])


def test_it_retries_after_a_500_and_after_a_timeout(receiver_factory, project_factory, send_due) -> None:
    receiver = receiver_factory([500, ("sleep", 2, 200), 200])
    project = project_factory(slug="alpha")
    _hook(project, receiver.url)
    _emit(project)
    for _ in range(3):
        send_due()
        _make_due()
    delivery = Delivery.objects.get()
    assert delivery.status == "succeeded" and delivery.attempts == 3
    log = list(delivery.attempt_log.values_list("number", "status_code", "is_success"))
    assert log == [(1, 500, False), (2, None, False), (3, 200, True)]
    assert "timed out" in delivery.attempt_log.get(number=2).error
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert ids == {delivery.message_id}  # the same id on every attempt: receivers deduplicate on it


def test_retries_back_off_and_stop_after_the_window(receiver_factory, project_factory, send_due, settings) -> None:
    settings.SYMPHONY_WEBHOOK_BACKOFF_BASE_SECONDS = 10
    settings.SYMPHONY_WEBHOOK_RETRY_FOR_SECONDS = 60
    receiver = receiver_factory([503])
    project = project_factory(slug="alpha")
    _hook(project, receiver.url)
    _emit(project)
    before = timezone.now()
    send_due()
    delivery = Delivery.objects.get()
    assert delivery.status == "pending"
    assert before + timedelta(seconds=5) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=10)
    assert send_due() == 0  # not due yet
    for _ in range(10):
        _make_due()
        send_due()
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.finished_at is not None
    assert delivery.attempts < 11  # gave up once the next retry fell past the 60 s window


def test_a_redirect_is_not_followed(receiver_factory, project_factory, send_due) -> None:
    target = receiver_factory([200])
    receiver = receiver_factory([("redirect", target.url)])
    project = project_factory(slug="alpha")
    _hook(project, receiver.url)
    _emit(project)
    send_due()
    assert target.requests == []
    assert Delivery.objects.get().attempt_log.get().status_code == 307
    assert Delivery.objects.get().status == "pending"


def test_a_run_of_failures_disables_the_webhook(
    receiver_factory, project_factory, send_due, settings, events, django_capture_on_commit_callbacks
) -> None:
    from webhooks import metrics

    settings.SYMPHONY_WEBHOOK_DISABLE_AFTER_FAILURES = 3
    receiver = receiver_factory([500])
    project = project_factory(slug="alpha")
    webhook, _ = _hook(project, receiver.url)
    before = metrics.WEBHOOKS_DISABLED._value.get()
    for _ in range(3):
        _emit(project)
    with django_capture_on_commit_callbacks(execute=True):
        send_due()
    webhook.refresh_from_db()
    assert not webhook.enabled and "3 failed" in webhook.disabled_reason
    [event] = events("webhook.disabled")
    assert event.project == "alpha"
    assert metrics.WEBHOOKS_DISABLED._value.get() == before + 1
    _make_due()
    assert send_due() == 0  # a disabled webhook sends nothing
    _emit(project)
    assert Delivery.objects.count() == 3  # and gets no new deliveries


def test_manual_redelivery_sends_it_again(receiver, project_factory, send_due, admin_api, events) -> None:
    project = project_factory(slug="alpha")
    _hook(project, receiver.url)
    _emit(project)
    send_due()
    delivery = Delivery.objects.get()
    r = admin_api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    send_due()
    assert len(receiver.requests) == 2
    assert receiver.requests[1]["headers"]["webhook-id"] == delivery.message_id
    detail = admin_api.get(f"/api/v1/webhook-deliveries/{delivery.pk}/").json()
    assert [a["number"] for a in detail["attempt_log"]] == [1, 2]
    assert detail["attempt_log"][0]["latency_ms"] >= 0
    assert len(events("webhook.redelivered")) == 1


def test_the_url_is_checked_again_at_delivery(receiver, project_factory, send_due, settings) -> None:
    project = project_factory(slug="alpha")
    _hook(project, receiver.url)
    _emit(project)
    settings.SYMPHONY_WEBHOOK_ALLOW_PRIVATE = False  # as if the name now resolved to loopback
    send_due()
    assert receiver.requests == []
    attempt = Delivery.objects.get().attempt_log.get()
    assert attempt.status_code is None and attempt.error.startswith("refused:")


def test_only_matching_webhooks_of_the_project_get_the_event(receiver, project_factory) -> None:
    alpha, beta = project_factory(slug="alpha"), project_factory(slug="beta")
    _hook(alpha, receiver.url, ["task.failed"])
    _hook(alpha, receiver.url, ["workflow.*"])
    _hook(beta, receiver.url, ["*"])
    _emit(alpha, "workflow.succeeded")
    assert list(Delivery.objects.values_list("webhook__events", flat=True)) == [["workflow.*"]]


def test_a_rolled_back_change_leaves_no_delivery(receiver, project_factory) -> None:
    project = project_factory(slug="alpha")
    _hook(project, receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        hooks.emit("task.succeeded", project_id=project.pk, data={})
        raise RuntimeError
    assert not Delivery.objects.exists()


# The command closes stale connections between rounds, as a long-running process must: that needs
# a test outside a wrapping transaction.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_finished_tasks_are_delivered_by_run_webhooks(receiver, project_factory) -> None:
    project = project_factory(slug="alpha")
    _, secret = _hook(project, receiver.url, ["task.succeeded", "task.failed"])
    owner = UserFactory(roles=["operator"])
    orchestra = OrchestraFactory(name="o", project=project)
    agent, _ = agent_create(owner=owner, name="a1", project=project)
    orchestra.agents.add(agent)
    for kind in ("one", "two"):
        task_submit(submitter=owner, kind=kind, orchestra=orchestra, max_attempts=1)
    first, second = task_claim(agent=agent, max_tasks=2)
    task_complete(task_id=first.pk, agent=agent, attempt=1, result={"ok": True})
    task_fail(task_id=second.pk, agent=agent, attempt=1, error="boom")
    call_command("run_webhooks", "--once")
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert sorted((b["type"], b["data"]["task"]["id"]) for b in bodies) == [
        ("task.failed", second.pk),
        ("task.succeeded", first.pk),
    ]
    assert all(verify(secret, r["headers"], r["body"]) for r in receiver.requests)
