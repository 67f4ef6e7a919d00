"""Test-only endpoints under /api/test/, mounted next to the real URLs (``pytest.mark.urls``)."""

from django.urls import include, path
from rest_framework import serializers, viewsets
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from accounts.models import ApiKey, Permission
from accounts.permissions import AUTHENTICATED, PUBLIC
from symphony.urls import urlpatterns as real_urlpatterns


class PermissionOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = Permission
        fields = ["code"]


class CatalogViewSet(viewsets.ReadOnlyModelViewSet):
    """A public list with a django-filter field, to exercise paging and the query-parameter policy."""

    queryset = Permission.objects.order_by("code")
    serializer_class = PermissionOutSerializer
    filterset_fields = ["code"]
    required_perms = {"list": PUBLIC, "retrieve": PUBLIC}


class KeyProbeOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["prefix"]


class KeyProbeViewSet(viewsets.ReadOnlyModelViewSet):
    """A public list with model-choice, integer and datetime filters, to exercise the filter backend."""

    queryset = ApiKey.objects.order_by("pk")
    serializer_class = KeyProbeOutSerializer
    filterset_fields = {"owner": ["exact"], "id": ["exact", "in"], "created_at": ["gte", "lte"]}
    required_perms = {"list": PUBLIC, "retrieve": PUBLIC}


class EchoView(APIView):
    required_perms = {"POST": PUBLIC}

    def post(self, request):
        return Response({"received": request.data})


class WhoAmIView(APIView):
    required_perms = {"GET": AUTHENTICATED}

    def get(self, request):
        return Response({"username": request.user.get_username()})


class BoomView(APIView):
    required_perms = {"GET": PUBLIC}

    def get(self, request):
        raise RuntimeError("secret-internal-detail SECRET_KEY=do-not-leak")


router = SimpleRouter()
router.register("catalog", CatalogViewSet, basename="test-catalog")
router.register("keys", KeyProbeViewSet, basename="test-key")

urlpatterns = [
    path("api/test/", include(router.urls)),
    path("api/test/echo/", EchoView.as_view(), name="test-echo"),
    path("api/test/whoami/", WhoAmIView.as_view(), name="test-whoami"),
    path("api/test/boom/", BoomView.as_view(), name="test-boom"),
    *real_urlpatterns,
]

handler400 = "symphony.exceptions.handler400"
handler403 = "symphony.exceptions.handler403"
handler404 = "symphony.exceptions.handler404"
handler500 = "symphony.exceptions.handler500"
