"""How the admin shows long identifiers: hashes, trace and request ids, keys.

``short`` truncates a long value and keeps the whole of it in ``title`` (the hover) in a monospace
``<code>``; ``admin_change_url`` links an audit event's ``resource_type`` and ``resource_id`` to that
object's admin page, from the admin site's registry (no query: a deleted object's link is a 404).
Every app's admin may use these (this package sits below all of them).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString


def short(value: Any, keep: int = 10) -> SafeString | str:
    """``value`` in monospace, cut to ``keep`` characters and an ellipsis when longer (the full value
    on hover, from ``title``); ``—`` when empty."""
    text = "" if value is None else str(value)
    if not text:
        return "—"
    if len(text) <= keep + 2:
        return format_html('<code class="console-mono" title="{}">{}</code>', text, text)
    return format_html('<code class="console-mono console-short" title="{}">{}…</code>', text, text[:keep])


@cache
def _change_url_names() -> dict[str, str]:
    from django.contrib import admin

    return {
        model._meta.label_lower: f"admin:{model._meta.app_label}_{model._meta.model_name}_change"
        for model in admin.site._registry
    }


def admin_change_url(resource_type: str, resource_id: Any) -> str:
    """The admin page of the object an audit event names (``agents.task`` and ``42``), or "" when the
    type has no admin page or the id is not one of its keys."""
    name = _change_url_names().get(resource_type or "")
    text = str(resource_id or "")
    if not name or not text.isdigit():
        return ""
    try:
        return reverse(name, args=[int(text)])
    except NoReverseMatch:
        return ""
