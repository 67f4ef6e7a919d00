"""Routes under /api/v1/: workflows/ (and {id}/stream/), approvals/, schedules/ and tasks/{id}/approval/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from workflows import stream_views, views
from workflows.scheduling import views as schedule_views

router = SimpleRouter(trailing_slash=True)
router.register("workflows", views.WorkflowRunViewSet, basename="workflow")
router.register("approvals", views.ApprovalViewSet, basename="approval")
router.register("schedules", schedule_views.ScheduleViewSet, basename="schedule")

urlpatterns = [
    path("tasks/<int:pk>/approval/", views.TaskApprovalView.as_view(), name="task-approval"),
    path("workflows/<int:pk>/stream/", stream_views.workflow_stream, name="workflow-stream"),
    *router.urls,
]
