"""Reads shared by the API and the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from agents.models import Agent, Orchestra, Task


def agent_list() -> QuerySet[Agent]:
    """Agents with owner, key and orchestra ids loaded (no query per row)."""
    return Agent.objects.select_related("owner", "api_key").prefetch_related("orchestras").order_by("name", "id")


def orchestra_list() -> QuerySet[Orchestra]:
    return Orchestra.objects.prefetch_related("agents").order_by("name", "id")


def task_list() -> QuerySet[Task]:
    """Every task, newest first. Anyone with agent:read sees the whole queue: it is the fleet's."""
    return Task.objects.select_related("submitter").order_by("-created_at", "-id")


def agent_for_key(api_key: Any) -> Agent | None:
    """The agent an API key is bound to, or None (a user's key, or no key at all)."""
    if api_key is None or not getattr(api_key, "pk", None):
        return None
    return Agent.objects.filter(api_key_id=api_key.pk).first()
