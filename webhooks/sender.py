"""The delivery loop of ``manage.py run_webhooks``: claim due deliveries, POST them, record.

Claiming is a lease: in one short transaction due rows are selected (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several senders never take the same row; SQLite serialises write transactions) and
their ``next_attempt_at`` pushed past the request timeout. HTTP then runs with no transaction and
no lock held. A sender that dies mid-request leaves the rows to be retried once the lease passes:
delivery is at least once, and receivers deduplicate on ``webhook-id``.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

import audit
from webhooks import metrics, signing, ssrf
from webhooks.models import Delivery, DeliveryAttempt, Webhook
from webhooks.services import webhook_signing_secrets

log = structlog.get_logger(__name__)

EXCERPT_BYTES = 1024
USER_AGENT = "Symphony-Webhooks/1"


@dataclass
class Outcome:
    status_code: int | None
    latency_ms: int
    excerpt: str = ""
    error: str = ""
    refused: bool = False

    @property
    def is_success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address the SSRF check approved, not to a second DNS answer."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def backoff_seconds(attempt: int) -> float:
    """Delay after failed attempt ``attempt`` (1-based): base * 2^(n-1), capped, with jitter in
    [half, full] so a receiver coming back is not hit by every retry at once."""
    base = settings.SYMPHONY_WEBHOOK_BACKOFF_BASE_SECONDS
    delay = min(base * 2 ** min(attempt - 1, 30), settings.SYMPHONY_WEBHOOK_BACKOFF_MAX_SECONDS)
    return delay * random.uniform(0.5, 1.0)  # jitter, not a secret


def deliveries_claim(*, limit: int, now: datetime | None = None) -> list[Delivery]:
    """Take up to ``limit`` due deliveries of enabled webhooks, oldest due first, under a lease."""
    now = now or timezone.now()
    hold = now + timedelta(seconds=settings.SYMPHONY_WEBHOOK_TIMEOUT_SECONDS * 2 + 30)
    with transaction.atomic():
        due = Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=now, webhook__enabled=True
        ).order_by("next_attempt_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        ids = list(due.values_list("id", flat=True)[:limit])
        if ids:
            Delivery.objects.filter(pk__in=ids).update(next_attempt_at=hold)
    return list(Delivery.objects.filter(pk__in=ids).select_related("webhook").order_by("id"))


def _body(delivery: Delivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def send(delivery: Delivery, secrets: list[str]) -> Outcome:
    """One HTTP POST (no DB access: runs in a pool thread). Redirects are not followed: a 3xx is a
    failed attempt like any other non-2xx."""
    started = time.monotonic()
    try:
        scheme, host, port, path, ip = ssrf.resolve_safe(delivery.webhook.url)
    except ssrf.UnsafeWebhookUrl as exc:
        return Outcome(None, 0, error=f"refused: {exc}"[:500], refused=True)
    body = _body(delivery)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            secrets, message_id=delivery.message_id, timestamp=timestamp, body=body
        ),
    }
    conn_class = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    conn = conn_class(host, port, ip, timeout=settings.SYMPHONY_WEBHOOK_TIMEOUT_SECONDS)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        excerpt = response.read(EXCERPT_BYTES).decode("utf-8", "replace")
        return Outcome(response.status, _ms(started), excerpt=excerpt)
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(None, _ms(started), error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        conn.close()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


@transaction.atomic
def delivery_record(delivery: Delivery, outcome: Outcome, *, now: datetime | None = None) -> None:
    """Log the attempt and schedule what follows: done, a retry after backoff, or given up once the
    retry window is over. A failed attempt extends the webhook's failure run; at
    SYMPHONY_WEBHOOK_DISABLE_AFTER_FAILURES it is disabled (audited, counted)."""
    now = now or timezone.now()
    number = delivery.attempts + 1
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=number,
        status_code=outcome.status_code,
        is_success=outcome.is_success,
        latency_ms=outcome.latency_ms,
        response_excerpt=outcome.excerpt[:EXCERPT_BYTES],
        error=outcome.error,
    )
    _observe(outcome)
    common = {"attempts": number, "last_status_code": outcome.status_code, "last_error": outcome.error}
    if outcome.is_success:
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.SUCCEEDED, finished_at=now, **common)
        Webhook.objects.filter(pk=delivery.webhook_id, consecutive_failures__gt=0).update(consecutive_failures=0)
        return
    retry_at = now + timedelta(seconds=backoff_seconds(number))
    if retry_at > delivery.give_up_at:
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, finished_at=now, **common)
        transaction.on_commit(metrics.DELIVERIES_ABANDONED.inc)
    else:
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=retry_at, **common)
    Webhook.objects.filter(pk=delivery.webhook_id).update(consecutive_failures=F("consecutive_failures") + 1)
    _maybe_disable(delivery.webhook_id)


def _observe(outcome: Outcome) -> None:
    if outcome.refused:
        label = "refused"
    elif outcome.status_code is None:
        label = "network_error"
    else:
        label = "success" if outcome.is_success else "http_error"
    metrics.DELIVERY_ATTEMPTS.labels(outcome=label).inc()
    if not outcome.refused:
        metrics.DELIVERY_SECONDS.observe(outcome.latency_ms / 1000)


def _maybe_disable(webhook_id: int) -> None:
    limit = settings.SYMPHONY_WEBHOOK_DISABLE_AFTER_FAILURES
    reason = f"Disabled after {limit} failed delivery attempts in a row."
    # Conditional: of several senders crossing the limit at once, one disables and audits.
    if Webhook.objects.filter(pk=webhook_id, enabled=True, consecutive_failures__gte=limit).update(
        enabled=False, disabled_reason=reason, updated_at=timezone.now()
    ):
        webhook = Webhook.objects.select_related("project").get(pk=webhook_id)
        audit.record(
            "webhook.disabled",
            resource=webhook,
            project=webhook.project,
            details={"reason": reason, "url": webhook.url},
        )
        transaction.on_commit(metrics.WEBHOOKS_DISABLED.inc)
        log.warning("webhook_disabled", webhook_id=webhook_id, failures=limit)


def run_once(*, pool: ThreadPoolExecutor, batch: int) -> int:
    """Claim one batch, send it through ``pool``, record every outcome. Returns how many were sent."""
    deliveries = deliveries_claim(limit=batch)
    if not deliveries:
        return 0
    jobs = []
    for delivery in deliveries:
        try:
            secrets = webhook_signing_secrets(delivery.webhook)
        except ValueError as exc:  # undecryptable: SYMPHONY_WEBHOOK_ENCRYPTION_KEY changed
            jobs.append((delivery, None, Outcome(None, 0, error=f"secret: {exc}"[:500])))
            continue
        jobs.append((delivery, pool.submit(send, delivery, secrets), None))
    outcomes = [(delivery, outcome or future.result()) for delivery, future, outcome in jobs]
    # One commit for the whole batch: per-delivery commits made the database the bottleneck.
    with transaction.atomic():
        for delivery, outcome in outcomes:
            delivery_record(delivery, outcome)
    return len(deliveries)
