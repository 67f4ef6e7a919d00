"""The operator console for schedules: filters, next firings, pause / resume / run-now actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.utils.html import format_html_join
from rest_framework.exceptions import APIException

from workflows.scheduling import services
from workflows.scheduling.models import Schedule, ScheduleFiring
from workflows.scheduling.serializers import next_firings


class ScheduleFiringInline(admin.TabularInline):
    model = ScheduleFiring
    fields = ["scheduled_for", "fired_at", "trigger", "outcome", "missed", "task", "run", "detail"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ["-fired_at", "-id"]

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).select_related("task", "run")


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = [
        "name", "project", "orchestra", "timing", "timezone", "enabled", "overlap", "next_fire_at", "last_fired_at",
    ]  # fmt: skip
    list_filter = ["enabled", "overlap", "project", "orchestra"]
    search_fields = ["name", "cron"]
    ordering = ["name", "id"]
    list_select_related = ["project", "orchestra"]
    inlines = [ScheduleFiringInline]
    actions = ["pause", "resume", "run_now"]

    def has_add_permission(self, request: Any) -> bool:
        return False  # created through the API, which validates the task or workflow body

    def get_readonly_fields(self, request: Any, obj: Any = None) -> list[str]:
        # Edits go through the API (PATCH), which validates cron, time zone and body together.
        return [*(f.name for f in Schedule._meta.fields), "upcoming"]

    @admin.display(description="cron / interval")
    def timing(self, schedule: Schedule) -> str:
        return schedule.cron or f"every {schedule.interval_seconds} s"

    @admin.display(description="next firings (UTC)")
    def upcoming(self, schedule: Schedule) -> str:
        ticks = next_firings(schedule)
        return format_html_join("", "<div>{}</div>", ((f"{t:%Y-%m-%d %H:%M:%S}",) for t in ticks)) or "paused"

    def _each(self, request: Any, queryset: Any, service: Any, verb: str) -> None:
        done, refused = 0, []
        for schedule in queryset:
            try:
                with transaction.atomic():
                    service(schedule_id=schedule.pk, actor=request.user)
                done += 1
            except APIException as error:
                refused.append(f"{schedule.name}: {error.detail}")
        self.message_user(request, f"{verb} {done} schedule(s).")
        for text in refused:
            self.message_user(request, text, level=messages.WARNING)

    @admin.action(permissions=["change"], description="Pause selected schedules")
    def pause(self, request: Any, queryset: Any) -> None:
        self._each(request, queryset, services.schedule_pause, "Paused")

    @admin.action(permissions=["change"], description="Resume selected schedules")
    def resume(self, request: Any, queryset: Any) -> None:
        self._each(request, queryset, services.schedule_resume, "Resumed")

    @admin.action(permissions=["change"], description="Run selected schedules now")
    def run_now(self, request: Any, queryset: Any) -> None:
        self._each(request, queryset, services.schedule_run_now, "Fired")
