"""The audit trail in the operator console: read-only, searchable, exportable as CSV."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit import export, selectors, services
from audit.chain import HASHED_FIELDS, OPTIONAL_HASHED_FIELDS
from audit.events import EVENT_TYPES
from audit.models import AuditEvent
from symphony.display import admin_change_url, short


class EventTypeFilter(admin.SimpleListFilter):
    """Choices from the catalog: the default filter would SELECT DISTINCT over the whole table."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(EVENT_TYPES)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(event_type=value) if value else queryset


# Changelist parameters that are not filters: kept out of the audit.exported record.
_NON_FILTER_PARAMS = {"o", "p", "all", "e", "_changelist_filters"}


#: Hashed fields the detail page shows through a display method of the admin below.
_SHOWN_AS = {
    "details": "pretty_details",
    "resource_id": "resource_link",
    "request_id": "request_id_short",
    "trace_id": "trace_id_short",
}


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = (
        "occurred_at",
        "event_type",
        "severity",
        "outcome",
        "actor_name",
        "api_key_prefix",
        "ip_address",
        "resource_type",
        "resource_link",
        "request_id_short",
    )
    list_filter = (EventTypeFilter, "severity", "outcome")
    search_fields = ("=actor_name", "=resource_id", "=request_id")
    date_hierarchy = "occurred_at"
    ordering = ("-id",)
    show_full_result_count = False  # a COUNT(*) over millions of rows on every page is too dear
    list_per_page = 100
    actions = ["export_selected_csv"]
    # The hashed content (details pretty-printed, long ids cut with the whole on hover, the resource
    # linked to its page), then the chain links.
    fields = (
        *(_SHOWN_AS.get(f, f) for f in HASHED_FIELDS),
        *OPTIONAL_HASHED_FIELDS,
        "chain_seq",
        "prev_hash_short",
        "hash_short",
    )
    readonly_fields = fields

    # Read-only: events are only ever added by audit.record() and removed by audit_purge.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The same scope as the API: a viewer bound in projects sees those projects' events only.
        return selectors.audit_event_list(viewer=request.user, code="audit:read")

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("audit.export_auditevent")

    @admin.display(description="details")
    def pretty_details(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True, ensure_ascii=False))

    @admin.display(description="resource id", ordering="resource_id")
    def resource_link(self, obj: AuditEvent) -> str:
        """The object's admin page, unless the event is its deletion (the page would be a 404)."""
        url = "" if obj.event_type.endswith(".deleted") else admin_change_url(obj.resource_type, obj.resource_id)
        return format_html('<a href="{}">{}</a>', url, obj.resource_id) if url else (obj.resource_id or "—")

    @admin.display(description="request id")
    def request_id_short(self, obj: AuditEvent) -> str:
        return short(obj.request_id, 8)

    @admin.display(description="trace id")
    def trace_id_short(self, obj: AuditEvent) -> str:
        return short(obj.trace_id, 12)

    @admin.display(description="prev hash")
    def prev_hash_short(self, obj: AuditEvent) -> str:
        return short(obj.prev_hash, 16)

    @admin.display(description="hash")
    def hash_short(self, obj: AuditEvent) -> str:
        return short(obj.hash, 16)

    def get_urls(self):
        urls = [
            path(
                "export-csv/",
                self.admin_site.admin_view(self.export_csv_view),
                name="audit_auditevent_export_csv",
            )
        ]
        return urls + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {**(extra_context or {}), "has_export_permission": self.has_export_permission(request)}
        return super().changelist_view(request, extra_context)

    def export_csv_view(self, request: HttpRequest) -> HttpResponseBase:
        """Export exactly what the changelist shows for the same query string (filters and search)."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:audit_auditevent_changelist") + "?e=1")
        queryset = changelist.get_queryset(request)
        filters = {key: value for key, value in request.GET.items() if key not in _NON_FILTER_PARAMS}
        return self._export(request, queryset, filters)

    @admin.action(permissions=["export"], description="Export selected audit events as CSV")
    def export_selected_csv(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        if request.POST.get("select_across") == "1":  # "select all N": the whole filtered list
            selection = {"selected": "all matching the changelist filters"}
        else:
            selection = {"selected_ids": sorted(queryset.values_list("id", flat=True))}  # one page at most
        return self._export(request, queryset, selection)

    def _export(self, request: HttpRequest, queryset: QuerySet, filters: dict) -> StreamingHttpResponse:
        bounded, _count = services.audit_export_start(
            queryset=queryset, fmt="csv", filters=filters, via="admin", actor=request.user
        )
        return export.streaming_response(bounded, "csv", now=timezone.now())
