"""The agents API: agents, orchestras, tasks, and the agent protocol (heartbeat, claim, lease calls).

Views validate with a serializer, call a service and serialize the result; the rules live in services.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import has_project_perm, projects_with
from accounts.permissions import AUTHENTICATED, ObjectFirstMixin, required_permission
from agents import filters, selectors, services
from agents.exceptions import AgentKeyRequired
from agents.models import Agent, Orchestra, Task
from agents.serializers import (
    AgentCreatedSerializer,
    AgentSerializer,
    AgentWriteSerializer,
    BatchCompleteResponseSerializer,
    BatchCompleteSerializer,
    CancelSerializer,
    ChildrenCreatedSerializer,
    ChildrenCreateSerializer,
    ClaimResponseSerializer,
    ClaimSerializer,
    CompleteSerializer,
    ExtendSerializer,
    FailSerializer,
    HeartbeatResponseSerializer,
    HeartbeatSerializer,
    LeaseSerializer,
    MembershipSerializer,
    OrchestraSerializer,
    OrchestraWriteSerializer,
    TaskEventPageSerializer,
    TaskEventPostSerializer,
    TaskEventSerializer,
    TaskExecuteSerializer,
    TaskSerializer,
    TaskSubmitSerializer,
    agent_list_data,
)
from agents.tracing import record_task_step, submission_span, submission_traceparent
from symphony.pagination import FirstPageCountPagination
from symphony.renderers import renders_plain_json
from symphony.serializers import validate_no_body, validated_body

EVENT_PAGE_MAX = 1000


def _query_int(request: Request, name: str, *, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValidationError({name: ["A non-negative integer is required."]})
    return min(value, maximum)


def _calling_agent(request: Request) -> Agent:
    """The agent bound to the request's API key. Raises ``AgentKeyRequired`` (403) for any other caller."""
    agent = selectors.agent_for_key(request.auth)
    if agent is None:
        raise AgentKeyRequired()
    return agent


def _creation_project(request: Request, data: dict[str, Any], code: str) -> Any:
    """The project a new object goes to: the one asked for, else the key's, else ``default``; refused
    (400 on ``project``, the same answer as for an unknown slug) where the caller lacks ``code``."""
    from accounts.models import DEFAULT_PROJECT_SLUG, Project

    project = data.pop("project", None)
    if project is None:
        key_project = getattr(request.user, "_api_key_project_id", None)
        lookup = {"pk": key_project} if key_project else {"slug": DEFAULT_PROJECT_SLUG}
        project = Project.objects.filter(**lookup).first()
    if project is None or not has_project_perm(request.user, code, project):
        raise ValidationError({"project": ["No such project, or you may not create objects in it."]})
    return project


def _require_visible(request: Request, field: str, objects: list[Any], code: str) -> None:
    """Refuse (400 on ``field``) objects of projects where the caller lacks ``code``."""
    allowed = projects_with(request.user, code)
    hidden = [obj.pk for obj in objects if obj is not None and obj.project_id not in allowed]
    if hidden:
        raise ValidationError({field: [f'Invalid pk "{hidden[0]}" - object does not exist.']})


def _submit(request: Request, data: dict[str, Any], **destination: Any) -> Response:
    with submission_span(kind=str(data.get("kind", ""))):
        task, created = services.task_submit(
            submitter=request.user,
            traceparent=submission_traceparent(request.headers.get("traceparent")),
            **data,
            **destination,
        )
    return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ProjectScoped(ObjectFirstMixin):
    """Querysets limited to the projects where the caller may read: objects of other projects answer
    404 and lists never show them; the action's own code is then checked in the object's project
    (``HasRequiredPermission.has_object_permission``: 403 where the caller reads but may not act)."""

    project_scoped = True
    read_code = "agent:read"

    def _code(self) -> str:
        code = required_permission(self.request, self)
        if self.action in ("list", "retrieve") and code and ":" in code:
            return code
        return self.read_code


class AgentViewSet(ProjectScoped, viewsets.ModelViewSet):
    """Agents. Creating one issues its agent-bound API key, shown once in the answer."""

    queryset = Agent.objects.none()
    serializer_class = AgentSerializer
    pagination_class = FirstPageCountPagination
    filterset_class = filters.AgentFilter
    search_fields = ["name", "type", "version"]
    ordering_fields = ["id", "name", "status", "created_at", "last_heartbeat_at"]
    lookup_value_regex = r"\d+"
    required_perms = {
        "list": "agent:read",
        "retrieve": "agent:read",
        "create": "agent:create",
        "update": "agent:update",
        "partial_update": "agent:update",
        "destroy": "agent:delete",
        "execute": "agent:execute",
    }

    def get_queryset(self):
        return selectors.agent_list(viewer=self.request.user, code=self._code(), for_listing=self.action == "list")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Filtered, searched, ordered and paginated as any list, but the page is read as plain rows and
        # shaped by agent_list_data (the same JSON as AgentSerializer, which still documents it; no
        # docstring here, it would replace the operation's description): building and serializing
        # model instances was most of the list's CPU.
        if connection.vendor == "postgresql" and renders_plain_json(request):
            return self._list_as_json(request)
        rows = selectors.agent_list_rows(self.filter_queryset(self.get_queryset()))
        page = self.paginate_queryset(rows)
        agents = list(rows) if page is None else page
        data = agent_list_data(agents, selectors.agent_orchestra_ids([row[0] for row in agents]))
        return Response(data) if page is None else self.get_paginated_response(data)

    def _list_as_json(self, request: Request) -> HttpResponse:
        """The same page with its entries built as JSON text by PostgreSQL (``selectors.agent_list_json``)
        and written into the page's envelope as they are: nothing of them is decoded in Python."""
        ids = self.filter_queryset(self.get_queryset()).values_list("id", flat=True)
        page = self.paginate_queryset(ids)
        entries = ",".join(selectors.agent_list_json(list(ids if page is None else page)))
        # Escaped as JSONRenderer does, so the body stays valid inside a <script> too.
        results = b"[" + entries.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode() + b"]"
        if page is None:
            return HttpResponse(results, content_type="application/json")
        envelope = self.get_paginated_response([]).data
        head = JSONRenderer().render({key: value for key, value in envelope.items() if key != "results"})
        return HttpResponse(head[:-1] + b',"results":' + results + b"}", content_type="application/json")

    @extend_schema(request=AgentWriteSerializer, responses={201: AgentCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated_body(AgentWriteSerializer, request)
        project = _creation_project(request, data, "agent:create")
        agent, raw_key = services.agent_create(owner=request.user, actor=request.user, project=project, **data)
        agent.api_key_raw = raw_key  # shown this once; never stored
        return Response(AgentCreatedSerializer(agent).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AgentWriteSerializer, responses=AgentSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        agent = self.get_object()
        partial = kwargs.get("partial", False)
        data = validated_body(AgentWriteSerializer, request, partial=partial)
        if partial:
            data = {field: value for field, value in data.items() if field in request.data}
        agent = services.agent_update(agent=agent, actor=request.user, data=data)
        return Response(AgentSerializer(selectors.agent_list().get(pk=agent.pk)).data)

    @extend_schema(request=AgentWriteSerializer, responses=AgentSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: Agent) -> None:
        services.agent_delete(agent=instance, actor=self.request.user)

    @extend_schema(request=TaskExecuteSerializer, responses={201: TaskSerializer, 200: TaskSerializer})
    @action(detail=True, methods=["post"])
    def execute(self, request: Request, pk: str | None = None) -> Response:
        """Submit a task addressed to this one agent (claimable by it whatever its orchestras' states)."""
        agent = self.get_object()
        return _submit(request, validated_body(TaskExecuteSerializer, request), target_agent=agent)


class OrchestraViewSet(ProjectScoped, viewsets.ModelViewSet):
    """Orchestras: named ensembles of agents; only running ones dispatch tasks."""

    read_code = "orchestra:read"
    queryset = Orchestra.objects.none()
    serializer_class = OrchestraSerializer
    filterset_class = filters.OrchestraFilter
    search_fields = ["name", "description"]
    ordering_fields = ["id", "name", "state", "created_at"]
    lookup_value_regex = r"\d+"
    required_perms = {
        "list": "orchestra:read",
        "retrieve": "orchestra:read",
        "create": "orchestra:create",
        "update": "orchestra:update",
        "partial_update": "orchestra:update",
        "destroy": "orchestra:delete",
        "start": "orchestra:control",
        "pause": "orchestra:control",
        "resume": "orchestra:control",
        "stop": "orchestra:control",
        "add_agents": "orchestra:update",
        "remove_agents": "orchestra:update",
    }

    def get_queryset(self):
        return selectors.orchestra_list(viewer=self.request.user, code=self._code(), for_listing=self.action == "list")

    def _answer(self, orchestra: Orchestra, code: int = status.HTTP_200_OK) -> Response:
        return Response(OrchestraSerializer(selectors.orchestra_list().get(pk=orchestra.pk)).data, status=code)

    @extend_schema(request=OrchestraWriteSerializer, responses={201: OrchestraSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated_body(OrchestraWriteSerializer, request)
        project = _creation_project(request, data, "orchestra:create")
        _require_visible(request, "agents", data.get("agents") or [], "agent:read")
        orchestra = services.orchestra_create(actor=request.user, project=project, **data)
        return self._answer(orchestra, status.HTTP_201_CREATED)

    @extend_schema(request=OrchestraWriteSerializer, responses=OrchestraSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        orchestra = self.get_object()
        data = validated_body(OrchestraWriteSerializer, request, partial=kwargs.get("partial", False))
        if data.pop("project", orchestra.project) != orchestra.project:
            raise ValidationError({"project": ["An orchestra's project cannot be changed."]})
        _require_visible(request, "agents", data.get("agents") or [], "agent:read")
        data = {field: value for field, value in data.items() if field in request.data}
        orchestra = services.orchestra_update(orchestra=orchestra, actor=request.user, **data)
        return self._answer(orchestra)

    @extend_schema(request=OrchestraWriteSerializer, responses=OrchestraSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: Orchestra) -> None:
        services.orchestra_delete(orchestra=instance, actor=self.request.user)

    def _transition(self, action_name: str) -> Response:
        validate_no_body(self.request)
        orchestra = services.orchestra_transition(
            orchestra=self.get_object(), actor=self.request.user, action=action_name
        )
        return self._answer(orchestra)

    @extend_schema(request=None, responses=OrchestraSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        """draft or stopped -> running."""
        return self._transition("start")

    @extend_schema(request=None, responses=OrchestraSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """running -> paused: no new claims; running tasks carry on."""
        return self._transition("pause")

    @extend_schema(request=None, responses=OrchestraSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """paused -> running."""
        return self._transition("resume")

    @extend_schema(request=None, responses=OrchestraSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        """draft, running or paused -> stopped: no new claims or submissions."""
        return self._transition("stop")

    @extend_schema(request=MembershipSerializer, responses=OrchestraSerializer)
    @action(detail=True, methods=["post"], url_path="add-agents")
    def add_agents(self, request: Request, pk: str | None = None) -> Response:
        """Add member agents by id."""
        orchestra = self.get_object()  # first: another project's orchestra is a 404, whatever the body
        agents = validated_body(MembershipSerializer, request)["agents"]
        _require_visible(request, "agents", agents, "agent:read")
        orchestra = services.orchestra_add_agents(orchestra=orchestra, actor=request.user, agents=agents)
        return self._answer(orchestra)

    @extend_schema(request=MembershipSerializer, responses=OrchestraSerializer)
    @action(detail=True, methods=["post"], url_path="remove-agents")
    def remove_agents(self, request: Request, pk: str | None = None) -> Response:
        """Remove member agents by id."""
        orchestra = self.get_object()
        agents = validated_body(MembershipSerializer, request)["agents"]
        orchestra = services.orchestra_remove_agents(orchestra=orchestra, actor=request.user, agents=agents)
        return self._answer(orchestra)


class TaskViewSet(ProjectScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Tasks: submit into an orchestra, watch, cancel and retry; agents extend, complete and fail them."""

    queryset = Task.objects.none()
    serializer_class = TaskSerializer
    filterset_class = filters.TaskFilter
    search_fields = ["kind", "idempotency_key", "concurrency_key"]
    ordering_fields = ["id", "created_at", "updated_at", "finished_at", "priority", "status"]
    lookup_value_regex = r"\d+"
    required_perms = {
        "list": "agent:read",
        "retrieve": "agent:read",
        "create": "agent:execute",
        "cancel": "agent:execute",
        "retry": "agent:execute",
        # The lease calls are for the agent holding the task: checked against its bound key.
        "extend": AUTHENTICATED,
        "complete": AUTHENTICATED,
        "fail": AUTHENTICATED,
        "events": "agent:read",
        "post_events": AUTHENTICATED,
        "children": AUTHENTICATED,  # POST: the holder's agent key; GET: checked in the action (agent:read)
    }

    def get_queryset(self):
        return selectors.task_list(viewer=self.request.user, code=self._code(), for_listing=self.action == "list")

    @extend_schema(request=TaskSubmitSerializer, responses={201: TaskSerializer, 200: TaskSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Submit a task. A repeated ``idempotency_key`` from the same submitter answers 200 with the
        existing task; the ``traceparent`` header (W3C) is kept with the task."""
        data = validated_body(TaskSubmitSerializer, request)
        _require_visible(request, "orchestra", [data.get("orchestra")], "agent:execute")
        return _submit(request, data)

    @extend_schema(request=CancelSerializer, responses=TaskSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a pending or running task (409 otherwise)."""
        reason = validated_body(CancelSerializer, request)["reason"]
        task = services.task_cancel(task_id=self.get_object().pk, actor=request.user, reason=reason)
        return Response(TaskSerializer(task).data)

    @extend_schema(request=None, responses=TaskSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Queue a failed or cancelled task again with a fresh attempt budget (409 otherwise)."""
        validate_no_body(request)
        task = services.task_retry(task_id=self.get_object().pk, actor=request.user)
        return Response(TaskSerializer(task).data)

    @extend_schema(request=ExtendSerializer, responses=LeaseSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def extend(self, request: Request, pk: str) -> Response:
        """Holder only: push the lease forward. 409 lease_lost when it moved on, 403 for other agents."""
        agent = _calling_agent(request)
        data = validated_body(ExtendSerializer, request)
        task = services.task_extend(task_id=int(pk), agent=agent, **data)
        return Response({"id": task.pk, "attempt": task.last_attempt, "lease_expires_at": task.lease_expires_at})

    @extend_schema(request=CompleteSerializer, responses=TaskSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def complete(self, request: Request, pk: str) -> Response:
        """Holder only: report the result; the task succeeds."""
        agent = _calling_agent(request)
        task = services.task_complete(task_id=int(pk), agent=agent, **validated_body(CompleteSerializer, request))
        record_task_step("symphony.task.complete", task, **{"symphony.agent": agent.name})
        return Response(TaskSerializer(task).data)

    @extend_schema(
        request=None,
        responses=TaskEventPageSerializer,
        parameters=[
            OpenApiParameter("after", int, description="Only events with a larger seq (default 0)."),
            OpenApiParameter("limit", int, description=f"At most this many (default 100, at most {EVENT_PAGE_MAX})."),
        ],
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def events(self, request: Request, pk: str | None = None) -> Response:
        """The task's events in seq order, after ``?after=``; ``next_after`` is the cursor of the next page."""
        task = self.get_object()
        after = _query_int(request, "after", default=0, maximum=2**31 - 1)
        limit = max(1, _query_int(request, "limit", default=100, maximum=EVENT_PAGE_MAX))
        rows = list(selectors.task_events(task_id=task.pk, after=after, limit=limit))
        next_after = rows[-1].seq if len(rows) == limit else None
        return Response({"events": TaskEventSerializer(rows, many=True).data, "next_after": next_after})

    @extend_schema(request=TaskEventPostSerializer, responses={201: TaskEventSerializer(many=True)})
    @events.mapping.post
    def post_events(self, request: Request, pk: str) -> Response:
        """Holder only: append one event or a list (``events``); 413 names the limit that was passed."""
        agent = _calling_agent(request)
        data = validated_body(TaskEventPostSerializer, request)
        rows = services.task_event_append(task_id=int(pk), agent=agent, **data)
        return Response(TaskEventSerializer(rows, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=FailSerializer, responses=TaskSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def fail(self, request: Request, pk: str) -> Response:
        """Holder only: report a failure; ``retryable`` puts it back in the queue while attempts are left."""
        agent = _calling_agent(request)
        task = services.task_fail(task_id=int(pk), agent=agent, **validated_body(FailSerializer, request))
        record_task_step(
            "symphony.task.fail", task, **{"symphony.agent": agent.name, "symphony.task.status": task.status}
        )
        return Response(TaskSerializer(task).data)

    @extend_schema(methods=["POST"], request=ChildrenCreateSerializer, responses={201: ChildrenCreatedSerializer})
    @extend_schema(methods=["GET"], request=None, responses=TaskSerializer(many=True))
    @action(detail=True, methods=["get", "post"], filter_backends=[], pagination_class=None)
    def children(self, request: Request, pk: str) -> Response:
        """GET: the task's children (agent:read). POST (holder only): create child tasks in the same
        orchestra and workflow; they are cancelled with the parent."""
        if request.method == "GET":
            if not request.user.has_perm("agent:read"):
                from rest_framework.exceptions import PermissionDenied

                raise PermissionDenied("Listing child tasks needs the agent:read permission.")
            parent = self.get_object()
            return Response(TaskSerializer(parent.children.order_by("id"), many=True).data)
        agent = _calling_agent(request)
        data = validated_body(ChildrenCreateSerializer, request)
        created = services.task_children_create(task_id=int(pk), agent=agent, **data)
        return Response({"children": TaskSerializer(created, many=True).data}, status=status.HTTP_201_CREATED)


def claim_response(agent: Agent, tasks: list[Task], headers: dict[str, str] | None = None) -> Response:
    """The answer to a claim (sync, or after a wait on the ASGI process)."""
    for task in tasks:
        record_task_step(
            "symphony.task.claim", task, **{"symphony.agent": agent.name, "symphony.task.attempt": task.last_attempt}
        )
    return Response(ClaimResponseSerializer({"tasks": tasks}).data, headers=headers)


class AgentProtocolViewSet(viewsets.GenericViewSet):
    """The agent protocol. Agent-bound keys only; the agent is the one the key is bound to."""

    queryset = Agent.objects.none()
    serializer_class = HeartbeatSerializer
    filter_backends: list[Any] = []
    pagination_class = None
    required_perms = {"heartbeat": AUTHENTICATED, "claim": AUTHENTICATED, "complete": AUTHENTICATED}

    @extend_schema(request=HeartbeatSerializer, responses=HeartbeatResponseSerializer)
    @action(detail=False, methods=["post"])
    def heartbeat(self, request: Request) -> Response:
        """Report liveness and status; the answer lists held tasks that were cancelled."""
        try:
            data = validated_body(HeartbeatSerializer, request)
        except APIException:
            _calling_agent(request)  # a caller that is no agent is told so (403) before its body is judged
            raise
        beat = services.heartbeat_for_key(api_key=request.auth, **data)
        if beat is None:
            raise AgentKeyRequired()
        return Response(
            {
                "agent": beat.agent_id,
                "name": beat.name,
                "status": beat.status,
                "cancelled_tasks": beat.cancelled_tasks,
                "heartbeat_timeout_seconds": settings.SYMPHONY_AGENT_HEARTBEAT_TIMEOUT,
                "server_time": timezone.now(),
            }
        )

    @extend_schema(request=ClaimSerializer, responses=ClaimResponseSerializer)
    @action(detail=False, methods=["post"])
    def claim(self, request: Request) -> Response:
        """Lease up to ``max_tasks`` pending tasks this agent can run: highest priority first, then oldest."""
        agent = _calling_agent(request)
        data = validated_body(ClaimSerializer, request)
        # A sync worker never holds a claim: the ASGI process waits (agents/claim_wait.py); here the
        # header tells the client this claim did not wait, so it polls instead of asking again at once.
        waited = {"X-Claim-Wait-Seconds": "0"} if data.pop("wait_seconds", 0) else None
        return claim_response(agent, services.task_claim(agent=agent, **data), headers=waited)

    @extend_schema(request=BatchCompleteSerializer, responses=BatchCompleteResponseSerializer)
    @action(detail=False, methods=["post"])
    def complete(self, request: Request) -> Response:
        """Complete several held tasks in one request, each fenced by its attempt and answered on its own:
        a stale entry gets its own 409 in ``results`` and does not stop the others (always 200 once
        the body is valid; 400 names a bad entry's field, e.g. ``results[2].attempt``)."""
        agent = _calling_agent(request)
        entries = validated_body(BatchCompleteSerializer, request)["results"]
        answers = []
        for outcome in services.task_complete_batch(agent=agent, results=entries):
            answer: dict[str, Any] = {"task": outcome.task_id, "attempt": outcome.attempt}
            if outcome.task is not None:
                record_task_step("symphony.task.complete", outcome.task, **{"symphony.agent": agent.name})
                answer |= {"ok": True, "status_code": 200, "task_status": outcome.task.status}
            else:
                error = outcome.error
                if isinstance(error.detail, dict | list):  # a ValidationError: the one error shape's details
                    failure = {"code": "validation_error", "message": "Invalid input.", "details": error.detail}
                else:
                    failure = {"code": error.get_codes(), "message": str(error.detail)}
                answer |= {"ok": False, "status_code": error.status_code, "error": failure}
            answers.append(answer)
        return Response({"results": answers, "completed": sum(1 for a in answers if a["ok"])})
