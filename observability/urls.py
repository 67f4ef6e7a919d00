from django.urls import path

from observability import views

urlpatterns = [
    path("health/live", views.live, name="health-live"),
]
