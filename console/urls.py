"""The console's pages, mounted under ``/admin/console/`` and wrapped in the admin's login and CSRF."""

from django.contrib import admin
from django.urls import path

from console import views

app_name = "console"

urlpatterns = [
    path("dashboard.json", admin.site.admin_view(views.dashboard_json), name="dashboard-json"),
    path("tasks/statuses.json", admin.site.admin_view(views.task_statuses), name="task-statuses"),
    path("tasks/<int:pk>.json", admin.site.admin_view(views.task_json), name="task-json"),
    path("tasks/<int:pk>/cancel/", admin.site.admin_view(views.task_action), {"action": "cancel"}, name="task-cancel"),
    path("tasks/<int:pk>/retry/", admin.site.admin_view(views.task_action), {"action": "retry"}, name="task-retry"),
    path(
        "workflows/<int:pk>/cancel/",
        admin.site.admin_view(views.workflow_action),
        {"action": "cancel"},
        name="workflow-cancel",
    ),
    path(
        "workflows/<int:pk>/retry/",
        admin.site.admin_view(views.workflow_action),
        {"action": "retry"},
        name="workflow-retry",
    ),
    path("tasks/submit/", admin.site.admin_view(views.task_submit_page), name="task-submit"),
    path("workflows/submit/", admin.site.admin_view(views.workflow_submit_page), name="workflow-submit"),
    path("usage/", admin.site.admin_view(views.usage_page), name="usage"),
    path("approvals/", admin.site.admin_view(views.approvals_inbox), name="approvals"),
    path("approvals/<int:pk>/decide/", admin.site.admin_view(views.approval_decide), name="approval-decide"),
]
