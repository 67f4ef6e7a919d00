"""What a view may assume of the renderer DRF chose for a request."""

from __future__ import annotations

from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request


def renders_plain_json(request: Request) -> bool:
    """Whether the answer is rendered as compact JSON by DRF's own ``JSONRenderer``: no browsable API,
    no ``indent`` (or other parameter) asked for in ``Accept``. Only then may a view write JSON text
    it got elsewhere (from PostgreSQL) into the body as it is."""
    renderer = getattr(request, "accepted_renderer", None)
    return type(renderer) is JSONRenderer and ";" not in (request.accepted_media_type or "")
