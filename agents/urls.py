"""Routes under /api/v1/: agents/, orchestras/, tasks/ (and their streams), agent/heartbeat|claim/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from agents import flow_views, stream_views, views
from symphony import runtime


def claim_wait_view():  # imported only in the ASGI process
    from agents.claim_wait import agent_claim

    return agent_claim


router = SimpleRouter(trailing_slash=True)
router.register("agents", views.AgentViewSet, basename="agent")
router.register("orchestras", views.OrchestraViewSet, basename="orchestra")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("concurrency-limits", flow_views.ConcurrencyLimitViewSet, basename="concurrency-limit")
router.register("budgets", flow_views.BudgetViewSet, basename="budget")

protocol_router = SimpleRouter(trailing_slash=True)
protocol_router.register("agent", views.AgentProtocolViewSet, basename="agent-protocol")

#: agent/heartbeat|claim|complete/...: the fleet's hot paths, so ``symphony.urls`` tries them first.
protocol_urlpatterns = [
    # The ASGI process answers claims itself, so that one with wait_seconds can wait (agents/claim_wait.py);
    # gunicorn keeps the viewset's sync claim, which never waits.
    *([path("agent/claim/", claim_wait_view(), name="agent-protocol-claim")] if runtime.ASGI else []),
    *protocol_router.urls,
]

urlpatterns = [
    # Served by the ASGI stream process in production (nginx routes /stream/ paths there).
    path("tasks/<int:pk>/stream/", stream_views.task_stream, name="task-stream"),
    path("usage/", flow_views.UsageView.as_view(), name="usage"),
    *router.urls,
]
