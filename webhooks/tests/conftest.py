"""Webhook tests: a real loopback receiver, API clients, and a way to run the sender."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from accounts.services import api_key_create
from accounts.tests.factories import UserFactory
from agents.tests.conftest import Api
from tests.servers import WebhookReceiver


@pytest.fixture(autouse=True)
def _webhook_settings(settings: Any) -> None:
    settings.SYMPHONY_WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    settings.SYMPHONY_WEBHOOK_TIMEOUT_SECONDS = 1
    settings.SYMPHONY_WEBHOOK_BACKOFF_BASE_SECONDS = 0
    settings.SYMPHONY_WEBHOOK_DISABLE_AFTER_FAILURES = 20


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., WebhookReceiver]]:
    made: list[WebhookReceiver] = []

    def make(script: list[Any] | None = None) -> WebhookReceiver:
        made.append(WebhookReceiver(script))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def receiver(receiver_factory: Callable[..., WebhookReceiver]) -> WebhookReceiver:
    return receiver_factory()


@pytest.fixture
def admin_api(db: None) -> Api:
    user = UserFactory(roles=["super_admin"])
    _, raw = api_key_create(owner=user, name="webhooks-admin")
    api = Api(raw)
    api.user = user
    return api


@pytest.fixture
def viewer_api(db: None) -> Api:
    user = UserFactory(roles=["viewer"])
    _, raw = api_key_create(owner=user, name="webhooks-viewer")
    return Api(raw)


@pytest.fixture
def send_due() -> Iterator[Callable[[], int]]:
    """Run one round of the sender (what run_webhooks does in its loop); returns how many were sent."""
    from webhooks import sender

    with ThreadPoolExecutor(max_workers=4) as pool:
        yield lambda: sender.run_once(pool=pool, batch=50)


@pytest.fixture
def events() -> Callable[..., list[Any]]:
    """``events("webhook.disabled")`` -> audit events of that type, oldest first."""
    from audit.models import AuditEvent

    return lambda event_type: list(AuditEvent.objects.filter(event_type=event_type).order_by("id"))
