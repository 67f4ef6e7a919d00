"""Operator console for workflow runs and approvals: filters, the steps of a run, and actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from agents.admin import ProjectScopedAdmin, _pretty, _run_per_object
from workflows import selectors, services
from workflows.models import Approval, WorkflowRun


class _ReadOnly(admin.ModelAdmin):
    """Runs and approvals change only through their services (the actions below, or the API)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ProjectScopedAdmin, _ReadOnly):
    list_display = ["id", "name", "project", "orchestra", "status", "step_count", "steps_left", "submitter",
                    "created_at", "finished_at"]  # fmt: skip
    # Scoped like tasks (ProjectScopedAdmin): runs of projects where the user reads agents, and the
    # project filter once it sees more than one.
    list_filter = ["status", ("orchestra", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["=id", "name", "idempotency_key"]
    ordering = ["-created_at", "-id"]
    list_select_related = ["project", "orchestra", "submitter"]
    show_full_result_count = False
    actions = ["cancel", "retry"]
    fields = ["name", "project", "orchestra", "status", "submitter", "idempotency_key", "step_count", "steps_left",
              "created_at", "finished_at", "steps_table"]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="steps")
    def steps_table(self, obj: WorkflowRun) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><a href='../../../agents/task/{}/change/'>#{}</a></td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            ((s.step_key, s.status, s.pk, s.pk, ", ".join(s.depends_on), s.attempts, s.error[:200])
             for s in selectors.workflow_steps(obj)[:500]),
        )  # fmt: skip
        return format_html(
            "<table><tr><th>step</th><th>status</th><th>task</th><th>depends on</th><th>attempts</th>"
            "<th>error</th></tr>{}</table>",
            rows,
        )

    def has_execute_permission(self, request: HttpRequest) -> bool:
        """Cancel and retry: the API's ``agent:execute``."""
        return request.user.has_perm("workflows.change_workflowrun")

    @admin.action(permissions=["execute"], description="Cancel selected workflows")
    def cancel(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        _run_per_object(self, request, queryset, "Cancelled",
                        lambda run: services.workflow_cancel(run_id=run.pk, actor=request.user))  # fmt: skip

    @admin.action(permissions=["execute"], description="Retry selected workflows")
    def retry(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        _run_per_object(self, request, queryset, "Retried",
                        lambda run: services.workflow_retry(run_id=run.pk, actor=request.user))  # fmt: skip


@admin.register(Approval)
class ApprovalAdmin(ProjectScopedAdmin, _ReadOnly):
    list_display = ["id", "kind", "status", "project", "step", "task", "approvers", "requested_at", "expires_at",
                    "decided_by", "decided_at"]  # fmt: skip
    list_filter = ["status", "kind", "approvers"]
    search_fields = ["=id", "=task__id", "question", "comment"]
    ordering = ["-created_at", "-id"]
    list_select_related = ["project", "task", "decided_by"]
    show_full_result_count = False
    actions = ["approve", "reject"]
    fields = ["kind", "status", "project", "task", "run", "approvers", "distinct_from_submitter", "question",
              "data_pretty", "submitter", "requested_by_agent", "requested_at", "expires_at", "decided_by",
              "decided_at", "comment"]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="step")
    def step(self, obj: Approval) -> str:
        return obj.task.step_key or "(mid-task)"

    @admin.display(description="data")
    def data_pretty(self, obj: Approval) -> str:
        return _pretty(obj.data)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        """Shown to anyone who may see approvals; the service checks each approval's own permission."""
        return request.user.has_perm("workflows.view_approval")

    @admin.action(permissions=["decide"], description="Approve selected approvals")
    def approve(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        _run_per_object(self, request, queryset, "Approved", lambda a: services.approval_decide(
            approval_id=a.pk, actor=request.user, approve=True, comment="approved in the admin"))  # fmt: skip

    @admin.action(permissions=["decide"], description="Reject selected approvals")
    def reject(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        _run_per_object(self, request, queryset, "Rejected", lambda a: services.approval_decide(
            approval_id=a.pk, actor=request.user, approve=False, comment="rejected in the admin"))  # fmt: skip
