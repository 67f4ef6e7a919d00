"""Symphony's URLs plus ``/api/v1/bench/whoami/``: an authenticated DRF read for bench_obs.py,
used when the accounts API (``/api/v1/me/``) is not there."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView


class WhoAmIView(APIView):
    required_perms = {"GET": "authenticated"}
    schema = None

    def get(self, request):
        return Response({"username": request.user.get_username(), "key_prefix": getattr(request.auth, "prefix", None)})


urlpatterns = [
    path("api/v1/bench/whoami/", WhoAmIView.as_view()),
    path("", include("symphony.urls")),
]
