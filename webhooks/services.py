"""Webhook subscriptions (create, update, delete, rotate the secret), the outbox receiver, and
manual redelivery. Sending lives in ``webhooks.sender`` (the ``run_webhooks`` process)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

import audit
from accounts.models import Project
from audit import hooks as domain_events
from symphony.db.rows import Columns
from webhooks import crypto, ssrf
from webhooks.models import Delivery, Webhook

log = structlog.get_logger(__name__)

_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")
MAX_PATTERNS = 50


def event_matches(patterns: list[str], event_type: str) -> bool:
    """``task.failed`` matches itself; ``workflow.*`` matches ``workflow.`` and below; ``*`` all."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def _check_events(events: list[str]) -> list[str]:
    if not events:
        raise ValidationError({"events": ["Give at least one event type pattern."]})
    if len(events) > MAX_PATTERNS:
        raise ValidationError({"events": [f"At most {MAX_PATTERNS} patterns."]})
    for pattern in events:
        if not isinstance(pattern, str) or not _PATTERN.match(pattern):
            raise ValidationError({"events": [f"{pattern!r} is not a pattern like task.failed or workflow.*."]})
    return sorted(set(events))


def _check_url(url: str) -> str:
    try:
        ssrf.resolve_safe(url)
    except ssrf.UnsafeWebhookUrl as exc:
        raise ValidationError({"url": [str(exc)]}) from exc
    return url


@transaction.atomic
def webhook_create(
    *, actor: Any, project: Project, url: str, events: list[str], description: str = "", enabled: bool = True
) -> tuple[Webhook, str]:
    """Subscribe ``url`` to ``events`` of ``project``; returns the webhook and its secret (shown
    once: only its encryption is stored). Raises ``ValidationError`` naming ``url`` (SSRF refusal,
    unresolvable) or ``events``."""
    secret = crypto.new_secret()
    webhook = Webhook.objects.create(
        project=project,
        url=_check_url(url),
        events=_check_events(events),
        description=description,
        enabled=enabled,
        secret_encrypted=crypto.encrypt(secret),
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    audit.record("webhook.created", actor=actor, resource=webhook, details={"url": url, "events": webhook.events})
    return webhook, secret


@transaction.atomic
def webhook_update(*, webhook: Webhook, actor: Any, data: dict[str, Any]) -> Webhook:
    """Change url, events, description or enabled. Re-enabling clears the failure run. Raises
    ``ValidationError`` naming the field."""
    changes: dict[str, Any] = {}
    if "url" in data and data["url"] != webhook.url:
        changes["url"] = _check_url(data["url"])
    if "events" in data:
        changes["events"] = _check_events(data["events"])
    for field in ("description", "enabled"):
        if field in data and data[field] != getattr(webhook, field):
            changes[field] = data[field]
    if changes.get("enabled") is True:
        changes.update(consecutive_failures=0, disabled_reason="")
    for field, value in changes.items():
        setattr(webhook, field, value)
    if changes:
        webhook.save(update_fields=[*changes, "updated_at"])
        audit.record("webhook.updated", actor=actor, resource=webhook, details={"changed": sorted(changes)})
    return webhook


@transaction.atomic
def webhook_delete(*, webhook: Webhook, actor: Any) -> None:
    """Delete the subscription and its delivery log."""
    audit.record("webhook.deleted", actor=actor, resource=webhook, details={"url": webhook.url})
    webhook.delete()


@transaction.atomic
def webhook_rotate_secret(*, webhook: Webhook, actor: Any, overlap_seconds: int | None = None) -> str:
    """A new secret (returned, shown once); the old one keeps signing, next to it, for
    ``overlap_seconds`` (default SYMPHONY_WEBHOOK_SECRET_OVERLAP_SECONDS; 0 ends it now)."""
    overlap = settings.SYMPHONY_WEBHOOK_SECRET_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
    secret = crypto.new_secret()
    webhook.previous_secret_encrypted = webhook.secret_encrypted if overlap > 0 else ""
    webhook.previous_secret_expires_at = timezone.now() + timedelta(seconds=overlap) if overlap > 0 else None
    webhook.secret_encrypted = crypto.encrypt(secret)
    webhook.save(update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_expires_at"])
    audit.record("webhook.secret_rotated", actor=actor, resource=webhook, details={"overlap_seconds": overlap})
    return secret


def webhook_signing_secrets(webhook: Webhook, *, now: Any = None) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous during overlap."""
    now = now or timezone.now()
    found = [crypto.decrypt(webhook.secret_encrypted)]
    expires = webhook.previous_secret_expires_at
    if webhook.previous_secret_encrypted and expires and now < expires:
        found.append(crypto.decrypt(webhook.previous_secret_encrypted))
    return found


_MATCHED = Columns(Webhook, "w", fields=["id", "events"])
#: ``Webhook.objects.filter(project_id=..., enabled=True).only("id", "events")`` in id order, written
#: once: every task that finishes asks it (``symphony.db.rows``).
_ENABLED_SQL = (
    f"SELECT {_MATCHED.sql} FROM {Webhook._meta.db_table} w WHERE w.project_id = %s AND w.enabled ORDER BY w.id"  # noqa: S608 (model names only)
)


def _enabled_webhooks(project_id: int) -> list[Webhook]:
    """The project's enabled webhooks: read once per batch of events (``domain_events.batched``)."""
    memo = domain_events.batch_memo()
    key = ("webhooks.enabled", project_id)
    if memo is not None and key in memo:
        return memo[key]
    with connection.cursor() as cursor:
        cursor.execute(_ENABLED_SQL, [project_id])
        found = [_MATCHED.build(row, connection) for row in cursor.fetchall()]
    if memo is not None:
        memo[key] = found
    return found


def outbox_enqueue(*, event_type: str, project_id: int | None, data: dict[str, Any]) -> list[Delivery]:
    """Write one pending delivery per enabled webhook of ``project_id`` whose patterns match, in the
    caller's transaction (one SELECT, and one INSERT when something matches). Nothing is sent here."""
    if project_id is None:
        return []
    hooks = [hook for hook in _enabled_webhooks(project_id) if event_matches(hook.events, event_type)]
    if not hooks:
        return []
    now = timezone.now()
    message_id = f"msg_{uuid.uuid4().hex}"
    payload = {"type": event_type, "timestamp": now.isoformat(), "data": data}
    give_up = now + timedelta(seconds=settings.SYMPHONY_WEBHOOK_RETRY_FOR_SECONDS)
    return Delivery.objects.bulk_create(
        Delivery(
            webhook_id=hook.pk,
            message_id=message_id,
            event_type=event_type,
            payload=payload,
            next_attempt_at=now,
            give_up_at=give_up,
        )
        for hook in hooks
    )


def outbox_enqueue_receiver(
    sender: Any, *, event_type: str, project_id: int | None, data: dict[str, Any], **_: Any
) -> None:
    """``audit.hooks.domain_event`` receiver (connected in ``WebhooksConfig.ready``)."""
    outbox_enqueue(event_type=event_type, project_id=project_id, data=data)


@transaction.atomic
def delivery_redeliver(*, delivery: Delivery, actor: Any) -> Delivery:
    """Queue the delivery again now, with a fresh retry window; same ``webhook-id``."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.PENDING,
        next_attempt_at=now,
        give_up_at=now + timedelta(seconds=settings.SYMPHONY_WEBHOOK_RETRY_FOR_SECONDS),
        finished_at=None,
    )
    delivery.refresh_from_db()
    audit.record(
        "webhook.redelivered",
        actor=actor,
        resource=delivery.webhook,
        details={"delivery": delivery.pk, "message_id": delivery.message_id},
    )
    return delivery
