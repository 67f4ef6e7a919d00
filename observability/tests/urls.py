"""The project's URLs plus one DRF view that needs ``system:admin``: a denial that gets audited."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView


class AdminOnlyProbeView(APIView):
    required_perms = {"GET": "system:admin"}

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("test-only/admin-probe/", AdminOnlyProbeView.as_view()),
    path("", include("symphony.urls")),
]
