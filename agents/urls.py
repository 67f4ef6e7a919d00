"""Routes under /api/v1/: agents/, orchestras/, tasks/ (and their streams), agent/heartbeat|claim/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from agents import stream_views, views

router = SimpleRouter(trailing_slash=True)
router.register("agents", views.AgentViewSet, basename="agent")
router.register("orchestras", views.OrchestraViewSet, basename="orchestra")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("agent", views.AgentProtocolViewSet, basename="agent-protocol")

urlpatterns = [
    # Served by the ASGI stream process in production (nginx routes /stream/ paths there).
    path("tasks/<int:pk>/stream/", stream_views.task_stream, name="task-stream"),
    *router.urls,
]
