"""The webhooks API: subscriptions (secret shown once), secret rotation, the delivery log, redelivery."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import ObjectFirstMixin
from symphony.serializers import validate_no_body, validated_body
from webhooks import selectors, services
from webhooks.filters import DeliveryFilter, WebhookFilter
from webhooks.models import Delivery, Webhook
from webhooks.serializers import (
    DeliveryDetailSerializer,
    DeliverySerializer,
    RotatedSecretSerializer,
    RotateSecretSerializer,
    WebhookCreatedSerializer,
    WebhookSerializer,
    WebhookUpdateSerializer,
    WebhookWriteSerializer,
)


class WebhookViewSet(ObjectFirstMixin, viewsets.ModelViewSet):
    """Webhook subscriptions. Creating one (or rotating) answers the signing secret, once. Another
    project's webhook is a 404 before any permission is named."""

    queryset = Webhook.objects.none()
    serializer_class = WebhookSerializer
    filterset_class = WebhookFilter
    search_fields = ["url", "description"]
    ordering_fields = ["id", "url", "created_at"]
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    required_perms = {
        "list": "system:monitor",
        "retrieve": "system:monitor",
        "create": "system:config",
        "partial_update": "system:config",
        "destroy": "system:config",
        "rotate_secret": "system:config",
    }

    def get_queryset(self):
        return selectors.webhook_list(viewer=self.request.user, api_key=self.request.auth)

    @extend_schema(request=WebhookWriteSerializer, responses={201: WebhookCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated_body(WebhookWriteSerializer, request)
        key_project = getattr(request.auth, "project_id", None)
        if key_project and data["project"].pk != key_project:
            raise NotFound("No such project for this API key.")
        webhook, secret = services.webhook_create(actor=request.user, **data)
        webhook.secret = secret  # shown this once; only its encryption is stored
        return Response(WebhookCreatedSerializer(webhook).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookUpdateSerializer, responses=WebhookSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        webhook = self.get_object()
        data = validated_body(WebhookUpdateSerializer, request, partial=True)
        webhook = services.webhook_update(webhook=webhook, actor=request.user, data=data)
        return Response(WebhookSerializer(webhook).data)

    def perform_destroy(self, instance: Any) -> None:
        services.webhook_delete(webhook=instance, actor=self.request.user)

    @extend_schema(request=RotateSecretSerializer, responses=RotatedSecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        """A new secret; the old one keeps signing alongside for ``overlap_seconds``."""
        webhook = self.get_object()
        data = validated_body(RotateSecretSerializer, request)
        secret = services.webhook_rotate_secret(webhook=webhook, actor=request.user, **data)
        return Response({"secret": secret, "previous_secret_expires_at": webhook.previous_secret_expires_at})


class DeliveryViewSet(ObjectFirstMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The delivery log: every event sent (or to send) to a webhook, with each attempt's answer."""

    queryset = Delivery.objects.none()
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter
    search_fields = ["event_type", "message_id"]
    ordering_fields = ["id", "status", "created_at", "next_attempt_at", "finished_at"]
    lookup_value_regex = r"\d+"
    required_perms = {"list": "system:monitor", "retrieve": "system:monitor", "redeliver": "system:config"}

    def get_queryset(self):
        qs = selectors.delivery_list(viewer=self.request.user, api_key=self.request.auth)
        return qs.prefetch_related("attempt_log") if self.action == "retrieve" else qs

    def get_serializer_class(self) -> type:
        return DeliveryDetailSerializer if self.action == "retrieve" else DeliverySerializer

    @extend_schema(request=None, responses=DeliverySerializer)
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, pk: str | None = None) -> Response:
        """Send it again now (same webhook-id), with a fresh retry window."""
        validate_no_body(request)
        delivery = services.delivery_redeliver(delivery=self.get_object(), actor=request.user)
        return Response(DeliverySerializer(delivery).data)
