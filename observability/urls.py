from django.urls import path

from observability import views

urlpatterns = [
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.ready, name="health-ready"),
    path("health/startup", views.startup, name="health-startup"),
    path("health", views.HealthView.as_view(), name="health"),
    path("metrics", views.metrics_view, name="metrics"),
]
