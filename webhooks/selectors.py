"""Reads shared by the webhooks API and admin."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.access import scope
from webhooks.models import Delivery, Webhook


def _key_project_id(api_key: Any) -> int | None:
    """The project an API key is restricted to (``ApiKey.project``), if the request used one."""
    return getattr(api_key, "project_id", None)


def webhook_list(*, viewer: Any, api_key: Any = None) -> QuerySet[Webhook]:
    """Webhooks of the projects where ``viewer`` may monitor (only its key's project for a key bound to
    one). Others answer 404 through this queryset."""
    qs = Webhook.objects.select_related("project")
    project_id = _key_project_id(api_key)
    qs = qs.filter(project_id=project_id) if project_id else qs
    return scope(qs, viewer, "system:monitor") if viewer is not None else qs


def delivery_list(*, viewer: Any, api_key: Any = None) -> QuerySet[Delivery]:
    """Deliveries of the webhooks ``viewer`` may see, newest first."""
    qs = Delivery.objects.select_related("webhook__project")
    project_id = _key_project_id(api_key)
    qs = qs.filter(webhook__project_id=project_id) if project_id else qs
    return scope(qs, viewer, "system:monitor", field="webhook__project_id") if viewer is not None else qs
