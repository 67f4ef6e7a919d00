"""Routes under /api/v1/: webhooks/ and webhook-deliveries/."""

from rest_framework.routers import SimpleRouter

from webhooks import views

router = SimpleRouter(trailing_slash=True)
router.register("webhooks", views.WebhookViewSet, basename="webhook")
router.register("webhook-deliveries", views.DeliveryViewSet, basename="webhook-delivery")

urlpatterns = router.urls
