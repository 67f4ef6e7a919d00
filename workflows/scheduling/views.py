"""The schedules API: CRUD, pause, resume, run-now and the firing history."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from symphony.serializers import validate_no_body, validated_body
from workflows.scheduling import filters, selectors, services
from workflows.scheduling.models import Schedule, ScheduleFiring
from workflows.scheduling.serializers import ScheduleFiringSerializer, ScheduleSerializer, ScheduleWriteSerializer


class ScheduleViewSet(viewsets.ModelViewSet):
    """Schedules: a task or a workflow fired on a cron expression or an interval by ``run_scheduler``."""

    queryset = Schedule.objects.none()
    serializer_class = ScheduleSerializer
    filterset_class = filters.ScheduleFilter
    search_fields = ["name"]
    ordering_fields = ["id", "name", "next_fire_at", "last_fired_at", "created_at"]
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    required_perms = {
        "list": "agent:read",
        "retrieve": "agent:read",
        "firings": "agent:read",
        "create": "agent:execute",
        "partial_update": "agent:execute",
        "destroy": "agent:execute",
        "pause": "agent:execute",
        "resume": "agent:execute",
        "run_now": "agent:execute",
    }

    def get_queryset(self):
        return selectors.schedule_list(viewer=self.request.user, api_key=self.request.auth)

    def _answer(self, schedule: Schedule, code: int = status.HTTP_200_OK) -> Response:
        return Response(ScheduleSerializer(self.get_queryset().get(pk=schedule.pk)).data, status=code)

    @extend_schema(request=ScheduleWriteSerializer, responses={201: ScheduleSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a schedule. 400 naming the field for an invalid cron, an unknown time zone, a bad body."""
        data = validated_body(ScheduleWriteSerializer, request, context=self.get_serializer_context())
        self._check_project(data)
        return self._answer(services.schedule_create(actor=request.user, **data), status.HTTP_201_CREATED)

    @extend_schema(request=ScheduleWriteSerializer, responses=ScheduleSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change some fields; a new cron, interval, time zone or enabled recomputes next_fire_at."""
        schedule = self.get_object()
        data = validated_body(ScheduleWriteSerializer, request, partial=True)
        self._check_project(data)
        return self._answer(services.schedule_update(schedule_id=schedule.pk, actor=request.user, changes=data))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.schedule_delete(schedule_id=self.get_object().pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _check_project(self, data: dict[str, Any]) -> None:
        project_id = getattr(self.request.auth, "project_id", None)
        if project_id and "orchestra" in data and data["orchestra"].project_id != project_id:
            from rest_framework.exceptions import ValidationError

            raise ValidationError({"orchestra": ["The orchestra belongs to another project than the API key's."]})

    @extend_schema(request=None, responses=ScheduleSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Stop firing on its own; next_fire_at becomes null."""
        validate_no_body(request)
        return self._answer(services.schedule_pause(schedule_id=self.get_object().pk, actor=request.user))

    @extend_schema(request=None, responses=ScheduleSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Fire again from the next tick after now (ticks passed while paused are not fired)."""
        validate_no_body(request)
        return self._answer(services.schedule_resume(schedule_id=self.get_object().pk, actor=request.user))

    @extend_schema(request=None, responses={201: ScheduleFiringSerializer})
    @action(detail=True, methods=["post"], url_path="run-now")
    def run_now(self, request: Request, pk: str | None = None) -> Response:
        """Fire once now. 409 schedule_overlap with overlap=skip while the previous firing's work is unfinished."""
        validate_no_body(request)
        firing = services.schedule_run_now(schedule_id=self.get_object().pk, actor=request.user)
        return Response(ScheduleFiringSerializer(firing).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses=ScheduleFiringSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "outcome",
                str,
                many=True,
                enum=ScheduleFiring.Outcome.values,
                description="Only firings with one of these outcomes (repeat the parameter for several).",
            ),
            OpenApiParameter(
                "trigger", str, enum=ScheduleFiring.Trigger.values, description="Only firings of this trigger."
            ),
        ],
    )
    @action(detail=True, methods=["get"])
    def firings(self, request: Request, pk: str | None = None) -> Response:
        """The firing history, newest first: what each firing made, or why it made nothing."""
        firings = filters.ScheduleFiringFilter(
            request.query_params, queryset=selectors.schedule_firings(schedule=self.get_object())
        ).qs
        page = self.paginate_queryset(firings)
        return self.get_paginated_response(ScheduleFiringSerializer(page, many=True).data)
