"""Routes under /api/v1/: agents/, orchestras/, tasks/ (and their streams), agent/heartbeat|claim/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from agents import flow_views, stream_views, views

router = SimpleRouter(trailing_slash=True)
router.register("agents", views.AgentViewSet, basename="agent")
router.register("orchestras", views.OrchestraViewSet, basename="orchestra")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("agent", views.AgentProtocolViewSet, basename="agent-protocol")
router.register("concurrency-limits", flow_views.ConcurrencyLimitViewSet, basename="concurrency-limit")
router.register("budgets", flow_views.BudgetViewSet, basename="budget")

urlpatterns = [
    # Served by the ASGI stream process in production (nginx routes /stream/ paths there).
    path("tasks/<int:pk>/stream/", stream_views.task_stream, name="task-stream"),
    path("usage/", flow_views.UsageView.as_view(), name="usage"),
    *router.urls,
]
