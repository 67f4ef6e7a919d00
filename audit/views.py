"""The audit trail over HTTP: search (``audit:read``) and streamed export (``audit:export``).

Reading the trail is not itself audited (it would flood the trail with its own reads); every
export is, as ``audit.exported``.
"""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from audit import export, selectors, services
from audit.filters import AuditEventFilter, applied_filters
from audit.pagination import AuditCursorPagination
from audit.serializers import AuditEventSerializer, AuditExportQuerySerializer

_EXPORT_DESCRIPTION = (
    "CSV with a header row (cells that could start a formula are prefixed with '), one JSON array, "
    "or JSON Lines (one event object per line). Times are ISO-8601 UTC."
)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, newest first: who did what, to what, with which outcome. A caller bound to
    projects sees only their events. Reading it is not audited; exporting it is."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    # No ordering: the cursor needs the trail's own order (newest id first).
    search_fields = ["event_type", "actor_name", "resource_type", "resource_id", "action"]
    pagination_class = AuditCursorPagination
    required_perms = {"list": "audit:read", "retrieve": "audit:read", "export": "audit:export"}
    # Held in some project is enough to ask: the queryset then holds only those projects' events.
    project_scoped = True

    def get_queryset(self):
        code = self.required_perms.get(self.action, "audit:read")
        return selectors.audit_event_list(viewer=self.request.user, code=code)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # ?format= is the export's own parameter, not DRF's renderer override: left to DRF, an
        # unsupported value would be a bare 404 instead of a 400 naming the parameter.
        if self.action == "export":
            return (JSONRenderer(), JSONRenderer.media_type)
        return super().perform_content_negotiation(request, force)

    @extend_schema(
        summary="Export audit events (streamed)",
        description="The events matching the same filters as the list, oldest first, streamed as "
        "CSV, JSON or JSON Lines. Each export is recorded as an audit.exported event.",
        filters=True,
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=sorted(export.FORMATS), default="csv"),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=_EXPORT_DESCRIPTION),
            (200, "application/json"): OpenApiResponse(
                AuditEventSerializer(many=True), description=_EXPORT_DESCRIPTION
            ),
            (200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR, description=_EXPORT_DESCRIPTION),
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request: Request) -> StreamingHttpResponse:
        query = AuditExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        fmt = query.validated_data["format"]
        queryset = self.filter_queryset(self.get_queryset())  # 400 on a bad filter, before anything is recorded
        bounded, _count = services.audit_export_start(
            queryset=queryset, fmt=fmt, filters=applied_filters(request.query_params), via="api", actor=request.user
        )
        return export.streaming_response(bounded, fmt, now=timezone.now())
