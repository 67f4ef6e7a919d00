"""Reads shared by the webhooks API and admin."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from webhooks.models import Delivery, Webhook


def _key_project_id(api_key: Any) -> int | None:
    """The project an API key is restricted to (``ApiKey.project``), if the request used one."""
    return getattr(api_key, "project_id", None)


def webhook_list(*, viewer: Any, api_key: Any = None) -> QuerySet[Webhook]:
    """Webhooks ``viewer`` may see: every project's, or only its key's project for a key bound to one.
    Others answer 404 through this queryset."""
    qs = Webhook.objects.select_related("project")
    project_id = _key_project_id(api_key)
    return qs.filter(project_id=project_id) if project_id else qs


def delivery_list(*, viewer: Any, api_key: Any = None) -> QuerySet[Delivery]:
    """Deliveries of the webhooks ``viewer`` may see, newest first."""
    qs = Delivery.objects.select_related("webhook__project")
    project_id = _key_project_id(api_key)
    return qs.filter(webhook__project_id=project_id) if project_id else qs
