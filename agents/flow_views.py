"""The flow-control API: concurrency limits, LLM usage, budgets."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import has_project_perm, scope
from agents import filters, selectors
from agents.flow_models import Budget, ConcurrencyLimit
from agents.flow_serializers import (
    BudgetSerializer,
    BudgetUpdateSerializer,
    BudgetWriteSerializer,
    ConcurrencyLimitSerializer,
    ConcurrencyLimitUpdateSerializer,
    ConcurrencyLimitWriteSerializer,
    UsageQuerySerializer,
    UsageReportSerializer,
)
from agents.services import limits, usage


def _validated(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    if "project" in serializer.fields and "project" not in data:
        # Omitted, ``project`` means the default one; without it there is nowhere to write.
        raise ValidationError({"project": ["This field is required: there is no default project."]})
    if "project" in data:
        _check_key_project(request, data["project"].pk)
    return data


def _check_key_project(request: Request, project_id: int) -> None:
    """Writes need ``orchestra:control`` in the target project (a key restricted to another one has not)."""
    if not has_project_perm(request.user, "orchestra:control", project_id):
        raise ValidationError({"project": ["You may not change flow control in this project."]})


def _scoped(request: Request, queryset: Any) -> Any:
    """Objects of the projects where the caller may read orchestras (``?project=`` is the filter)."""
    return scope(queryset, request.user, "orchestra:read")


class ConcurrencyLimitViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """At most ``max_running`` tasks with a ``concurrency_key`` run at once; a key without a limit is unlimited."""

    serializer_class = ConcurrencyLimitSerializer
    project_scoped = True
    filterset_class = filters.ConcurrencyLimitFilter
    search_fields = ["key"]
    ordering_fields = ["id", "key", "max_running", "created_at"]
    lookup_value_regex = r"\d+"
    required_perms = {
        "list": "orchestra:read",
        "retrieve": "orchestra:read",
        "create": "orchestra:control",
        "update": "orchestra:control",
        "partial_update": "orchestra:control",
        "destroy": "orchestra:control",
    }

    def get_queryset(self):
        return _scoped(self.request, ConcurrencyLimit.objects.select_related("project").order_by("key", "id"))

    @extend_schema(request=ConcurrencyLimitWriteSerializer, responses={201: ConcurrencyLimitSerializer})
    def create(self, request: Request) -> Response:
        limit = limits.concurrency_limit_create(
            actor=request.user, **_validated(ConcurrencyLimitWriteSerializer, request)
        )
        return Response(ConcurrencyLimitSerializer(limit).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ConcurrencyLimitUpdateSerializer, responses={200: ConcurrencyLimitSerializer})
    def update(self, request: Request, pk: str | None = None) -> Response:
        limit = limits.concurrency_limit_update(
            limit=self.get_object(), actor=request.user, **_validated(ConcurrencyLimitUpdateSerializer, request)
        )
        return Response(ConcurrencyLimitSerializer(limit).data)

    @extend_schema(request=ConcurrencyLimitUpdateSerializer, responses={200: ConcurrencyLimitSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk)

    def perform_destroy(self, instance: ConcurrencyLimit) -> None:
        limits.concurrency_limit_delete(limit=instance, actor=self.request.user)


class UsageView(APIView):
    """LLM tokens and cost reported by tasks, summed per group and currency (one report object, not a
    paginated list)."""

    required_perms = {"GET": "orchestra:read"}
    project_scoped = True

    @extend_schema(parameters=[UsageQuerySerializer], responses={200: UsageReportSerializer})
    def get(self, request: Request) -> Response:
        serializer = UsageQuerySerializer(data=request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        query = serializer.validated_data
        rows = selectors.usage_summary(**query, viewer=request.user)
        return Response(UsageReportSerializer({"group_by": query["group_by"], "results": rows}).data)


class BudgetViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Spend limits per day or month for an orchestra; when spent, its tasks are not claimed or accepted."""

    serializer_class = BudgetSerializer
    project_scoped = True
    filterset_class = filters.BudgetFilter
    ordering_fields = ["id", "created_at", "limit", "spent"]
    lookup_value_regex = r"\d+"
    required_perms = {
        "list": "orchestra:read",
        "retrieve": "orchestra:read",
        "create": "orchestra:control",
        "update": "orchestra:control",
        "partial_update": "orchestra:control",
        "destroy": "orchestra:control",
    }

    def get_queryset(self):
        return _scoped(self.request, Budget.objects.select_related("project").order_by("id"))

    @extend_schema(request=BudgetWriteSerializer, responses={201: BudgetSerializer})
    def create(self, request: Request) -> Response:
        budget = usage.budget_create(actor=request.user, **_validated(BudgetWriteSerializer, request))
        return Response(BudgetSerializer(budget).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=BudgetUpdateSerializer, responses={200: BudgetSerializer})
    def update(self, request: Request, pk: str | None = None) -> Response:
        budget = usage.budget_update(
            budget=self.get_object(), actor=request.user, **_validated(BudgetUpdateSerializer, request)
        )
        return Response(BudgetSerializer(budget).data)

    @extend_schema(request=BudgetUpdateSerializer, responses={200: BudgetSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk)

    def perform_destroy(self, instance: Budget) -> None:
        usage.budget_delete(budget=instance, actor=self.request.user)
