"""Routes under /api/v1/: agents/, orchestras/, tasks/ and the agent protocol agent/heartbeat|claim/."""

from rest_framework.routers import SimpleRouter

from agents import flow_views, views

router = SimpleRouter(trailing_slash=True)
router.register("agents", views.AgentViewSet, basename="agent")
router.register("orchestras", views.OrchestraViewSet, basename="orchestra")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("agent", views.AgentProtocolViewSet, basename="agent-protocol")
router.register("concurrency-limits", flow_views.ConcurrencyLimitViewSet, basename="concurrency-limit")
router.register("budgets", flow_views.BudgetViewSet, basename="budget")
router.register("usage", flow_views.UsageView, basename="usage")

urlpatterns = router.urls
