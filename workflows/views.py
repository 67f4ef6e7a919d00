"""The workflows API: runs (submit, list, detail, cancel, retry), approvals, and mid-task questions."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import AUTHENTICATED
from agents.views import ProjectScoped, _calling_agent, _require_visible
from symphony.serializers import validate_no_body, validated_body
from workflows import filters, selectors, services
from workflows.models import Approval, WorkflowRun
from workflows.serializers import (
    ApprovalRequestSerializer,
    ApprovalSerializer,
    DecisionSerializer,
    WorkflowRunDetailSerializer,
    WorkflowRunSerializer,
    WorkflowSubmitSerializer,
)


class WorkflowRunViewSet(ProjectScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Workflow runs: a DAG of steps, each step a task. Runs of other projects answer 404."""

    queryset = WorkflowRun.objects.none()
    serializer_class = WorkflowRunSerializer
    filterset_class = filters.WorkflowRunFilter
    search_fields = ["name", "idempotency_key"]
    ordering_fields = ["id", "name", "status", "created_at", "updated_at", "finished_at"]
    lookup_value_regex = r"\d+"
    required_perms = {
        "list": "agent:read",
        "retrieve": "agent:read",
        "create": "agent:execute",
        "cancel": "agent:execute",
        "retry": "agent:execute",
    }

    def get_queryset(self):
        return selectors.workflow_list(viewer=self.request.user, code=self._code())

    def get_serializer_class(self):
        return WorkflowRunSerializer if self.action == "list" else WorkflowRunDetailSerializer

    def _answer(self, run: WorkflowRun, code: int = status.HTTP_200_OK) -> Response:
        return Response(WorkflowRunDetailSerializer(selectors.workflow_list().get(pk=run.pk)).data, status=code)

    @extend_schema(request=WorkflowSubmitSerializer, responses={201: WorkflowRunDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Submit a run. 400 naming the step for an unknown dependency, a cycle, a duplicate key or too many steps."""
        data = validated_body(WorkflowSubmitSerializer, request)
        _require_visible(request, "orchestra", [data["orchestra"]], "agent:execute")
        run, created = services.workflow_submit(submitter=request.user, **data)
        return self._answer(run, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=None, responses=WorkflowRunDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel every unfinished step; running ones learn it from their lease (409 task_cancelled)."""
        validate_no_body(request)
        return self._answer(services.workflow_cancel(run_id=self.get_object().pk, actor=request.user))

    @extend_schema(request=None, responses=WorkflowRunDetailSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Re-run failed and cancelled steps and their dependents; succeeded steps are kept."""
        validate_no_body(request)
        return self._answer(services.workflow_retry(run_id=self.get_object().pk, actor=request.user))


class ApprovalViewSet(ProjectScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Human approvals: approval steps and questions agents asked mid-task. Other projects' answer 404."""

    queryset = Approval.objects.none()
    serializer_class = ApprovalSerializer
    filterset_class = filters.ApprovalFilter
    search_fields = ["question", "approvers"]
    ordering_fields = ["id", "status", "requested_at", "expires_at", "decided_at"]
    lookup_value_regex = r"\d+"
    required_perms = {
        "list": "agent:read",
        "retrieve": "agent:read",
        # Who may decide is the approval's own ``approvers`` permission, checked by the service.
        "approve": AUTHENTICATED,
        "reject": AUTHENTICATED,
    }

    def get_queryset(self):
        return selectors.approval_list(viewer=self.request.user, code=self._code())

    def _decide(self, request: Request, approve: bool) -> Response:
        comment = validated_body(DecisionSerializer, request)["comment"]
        approval_id = self.get_object().pk  # 404 for another project's approval, before any decision
        services.approval_decide(approval_id=approval_id, actor=request.user, approve=approve, comment=comment)
        return Response(ApprovalSerializer(selectors.approval_get(approval_id=approval_id)).data)

    @extend_schema(request=DecisionSerializer, responses=ApprovalSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        """Approve (403 without the approvers permission, or for the submitter with distinct_from_submitter)."""
        return self._decide(request, True)

    @extend_schema(request=DecisionSerializer, responses=ApprovalSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        """Reject: an approval step fails (dependents cancelled); a mid-task question resumes with the decision."""
        return self._decide(request, False)


class TaskApprovalView(APIView):
    """POST tasks/{id}/approval/: the holder asks a human; the lease is released and the task parked."""

    required_perms = {"POST": AUTHENTICATED}

    @extend_schema(request=ApprovalRequestSerializer, responses={201: ApprovalSerializer})
    def post(self, request: Request, pk: int) -> Response:
        agent = _calling_agent(request)
        data = validated_body(ApprovalRequestSerializer, request)
        approval = services.approval_request(task_id=pk, agent=agent, **data)
        return Response(ApprovalSerializer(approval).data, status=status.HTTP_201_CREATED)
