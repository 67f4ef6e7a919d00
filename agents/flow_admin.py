"""Operator console for flow control: concurrency limits, budgets, and LLM usage per orchestra and agent.

Imported by ``agents.admin``. Writes go through the services, so the admin is audited like the API.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet, Sum
from django.http import HttpRequest

from agents.admin import ProjectScopedAdmin
from agents.flow_models import Budget, ConcurrencyLimit, UsageRecord
from agents.services import limits, usage


@admin.register(ConcurrencyLimit)
class ConcurrencyLimitAdmin(admin.ModelAdmin):
    list_display = ("key", "project", "max_running", "updated_at")
    list_filter = ("project",)
    search_fields = ("key",)
    ordering = ("project", "key")
    list_select_related = ("project",)
    fields = ("project", "key", "max_running")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("project", "key") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: ConcurrencyLimit, form: Any, change: bool) -> None:
        if change:
            limits.concurrency_limit_update(limit=obj, actor=request.user, max_running=obj.max_running)
        else:
            created = limits.concurrency_limit_create(
                actor=request.user, project=obj.project, key=obj.key, max_running=obj.max_running
            )
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: ConcurrencyLimit) -> None:
        limits.concurrency_limit_delete(limit=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for limit in queryset:
            limits.concurrency_limit_delete(limit=limit, actor=request.user)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("__str__", "project", "orchestra", "spent", "alerted_percent", "period_start")
    list_filter = ("project", "period", "currency")
    ordering = ("project", "id")
    list_select_related = ("project", "orchestra")
    autocomplete_fields = ("orchestra",)
    fields = ("project", "orchestra", "limit", "currency", "period", "spent", "period_start", "alerted_percent")
    readonly_fields = ("spent", "period_start", "alerted_percent")

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        if change:
            changes = {
                name: getattr(obj, name) for name in form.changed_data if name in ("limit", "currency", "period")
            }
            usage.budget_update(budget=obj, actor=request.user, **changes)
        else:
            created = usage.budget_create(
                actor=request.user,
                project=obj.project,
                orchestra=obj.orchestra,
                limit=obj.limit,
                currency=obj.currency,
                period=obj.period,
            )
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        usage.budget_delete(budget=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for budget in queryset:
            usage.budget_delete(budget=budget, actor=request.user)


@admin.register(UsageRecord)
class UsageRecordAdmin(ProjectScopedAdmin, admin.ModelAdmin):
    """Read-only usage records of the projects where the user holds ``orchestra:read`` (as the API's
    ``usage/`` and the console's usage page count them), with totals per orchestra and per agent
    above the list (same filters)."""

    read_code = "orchestra:read"
    list_display = ("created_at", "project", "orchestra", "agent", "model", "input_tokens", "output_tokens", "cost")
    list_filter = (
        ("project", admin.RelatedOnlyFieldListFilter),
        ("orchestra", admin.RelatedOnlyFieldListFilter),
        ("agent", admin.RelatedOnlyFieldListFilter),
        "model",
        "currency",
        "source",
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    list_select_related = ("project", "orchestra", "agent")
    show_full_result_count = False
    change_list_template = "admin/agents/usagerecord/change_list.html"

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        # Always the project filter (the usage page's rows link to it), limited to the user's projects.
        return list(self.list_filter)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")
        if cl is not None:
            records = cl.queryset.order_by()
            totals = {"input": Sum("input_tokens"), "output": Sum("output_tokens"), "cost": Sum("cost")}
            response.context_data["usage_by"] = [
                (
                    label,
                    records.values(name, "currency").annotate(**totals, records=Count("id")).order_by(name, "currency"),
                    name,
                )
                for label, name in (("orchestra", "orchestra__name"), ("agent", "agent__name"))
            ]
        return response
