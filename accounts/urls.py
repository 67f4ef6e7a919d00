from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts import views

router = SimpleRouter(trailing_slash=True)
router.register("permissions", views.PermissionViewSet, basename="permission")
router.register("roles", views.RoleViewSet, basename="role")
router.register("projects", views.ProjectViewSet, basename="project")
router.register("users", views.UserViewSet, basename="user")
router.register("api-keys", views.ApiKeyViewSet, basename="apikey")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("access/check/", views.AccessCheckView.as_view(), name="access-check"),
    *router.urls,
]
