"""The console's own admin pages and the JSON its polling script reads.

Every view is wrapped in ``admin.site.admin_view`` (staff login, CSRF, never cached) by ``urls.py``.
Writes call the domain services and check the same permission codes as the API; a refusal is a
message on the page (the service's own explanation), never a 500.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import APIException

from accounts.access import projects_with, scope
from agents import services as agent_services
from agents.models import Task
from console import approvals as inbox
from console.dashboard import dashboard_numbers
from console.timeline import can_execute, task_timeline
from workflows import services as workflow_services
from workflows.models import Approval


def _dashboard_context(request: HttpRequest) -> dict[str, Any]:
    from console.templatetags.console import dashboard_charts

    numbers = dashboard_numbers(viewer=request.user)
    return {"dash": numbers, "charts": dashboard_charts(numbers)}


@require_GET
def dashboard_json(request: HttpRequest) -> JsonResponse:
    """The dashboard's numbers, and its fragment rendered, for the page's one-second poll."""
    context = _dashboard_context(request)
    html = render_to_string("console/_dashboard.html", context, request=request)
    return JsonResponse({"numbers": context["dash"], "html": html})


def _visible_task(request: HttpRequest, pk: int) -> Task:
    tasks = scope(Task.objects.select_related("submitter", "agent", "orchestra", "parent"), request.user, "agent:read")
    try:
        return tasks.get(pk=pk)
    except Task.DoesNotExist:
        raise Http404("No such task.") from None


@require_GET
def task_json(request: HttpRequest, pk: int) -> JsonResponse:
    """A task's status and its timeline fragment, for the task page's poll."""
    task = _visible_task(request, pk)
    timeline = task_timeline(task, viewer=request.user)
    html = render_to_string("console/_task_timeline.html", {"tl": timeline}, request=request)
    return JsonResponse({"id": task.pk, "status": task.status, "attempts": task.attempts, "html": html})


MAX_STATUS_IDS = 500


@require_GET
def task_statuses(request: HttpRequest) -> JsonResponse:
    """``?ids=1,2,3``: the status of each listed task the viewer may read (others are left out), for
    the task list's poll. A malformed or too long list is a 400 naming ``ids``."""
    raw = [part for part in request.GET.get("ids", "").split(",") if part]
    if len(raw) > MAX_STATUS_IDS or not all(part.isdigit() and len(part) < 19 for part in raw):
        message = f"ids: up to {MAX_STATUS_IDS} task ids, comma-separated"
        return JsonResponse({"error": {"code": "invalid", "message": message}}, status=400)
    rows = scope(Task.objects.filter(pk__in=[int(part) for part in raw]), request.user, "agent:read")
    answer: dict[str, Any] = {"statuses": {str(pk): status for pk, status in rows.values_list("pk", "status")}}
    after = request.GET.get("after", "")
    if after:
        if not (after.isdigit() and len(after) < 19):
            return JsonResponse({"error": {"code": "invalid", "message": "after: a task id"}}, status=400)
        answer["new"] = _new_tasks(request, int(after), request.GET.get("filters", ""))
    return JsonResponse(answer)


#: The task list's filters ``_new_tasks`` applies: (query parameter, queryset lookup).
LIST_FILTERS = {
    "status__exact": "status",
    "priority__exact": "priority",
    "orchestra__id__exact": "orchestra_id",
    "orchestra__isnull": "orchestra__isnull",
    "agent__id__exact": "agent_id",
    "project__id__exact": "project_id",
    "kind": "kind",
    "kind__exact": "kind",
}
#: List parameters that select no rows (ordering, page size, popups): ignored.
LIST_VIEW_PARAMS = {"o", "_changelist_filters", "all"}
MAX_NEW = 100


def _new_tasks(request: HttpRequest, after: int, filters: str) -> int | None:
    """How many tasks the viewer may read with an id above ``after`` match the list's ``filters``
    (its query string), up to ``MAX_NEW``; None when the list uses a filter or search not applied
    here, or shows a later page (new rows would not appear on it)."""
    from django.http import QueryDict

    params = QueryDict(filters)
    tasks = scope(Task.objects.filter(pk__gt=after), request.user, "agent:read")
    for name, values in params.lists():
        if name in LIST_VIEW_PARAMS:
            continue
        if name == "p" and values[-1] in ("", "1"):
            continue
        if name not in LIST_FILTERS:
            return None
        value: Any = values[-1]
        if name == "orchestra__isnull":
            value = value in ("True", "true", "1")
        try:
            tasks = tasks.filter(**{LIST_FILTERS[name]: value})
        except (ValueError, TypeError):
            return None
    try:
        return tasks.order_by()[:MAX_NEW].count()
    except (ValueError, TypeError):
        return None


@require_POST
def task_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Cancel or retry from the task's page: ``agent:execute`` in the task's project, else 403."""
    task = _visible_task(request, pk)
    if not can_execute(request.user, task):
        raise PermissionDenied("Cancelling or retrying a task needs agent:execute in its project.")
    try:
        with transaction.atomic():
            if action == "cancel":
                agent_services.task_cancel(task_id=task.pk, actor=request.user, reason="admin")
            else:
                agent_services.task_retry(task_id=task.pk, actor=request.user)
    except APIException as exc:
        messages.warning(request, f"Task #{task.pk} was not changed: {exc.detail}")
    else:
        messages.success(request, f"Task #{task.pk} {'cancelled' if action == 'cancel' else 'queued again'}.")
    return HttpResponseRedirect(reverse("admin:agents_task_change", args=[task.pk]))


@require_POST
def workflow_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Cancel or retry a workflow run from its page (``agent:execute`` in its project)."""
    from workflows.models import WorkflowRun

    run = scope(WorkflowRun.objects.all(), request.user, "agent:read").filter(pk=pk).first()
    if run is None:
        raise Http404("No such workflow run.")
    if run.project_id not in projects_with(request.user, "agent:execute"):
        raise PermissionDenied("Cancelling or retrying a workflow needs agent:execute in its project.")
    call = workflow_services.workflow_cancel if action == "cancel" else workflow_services.workflow_retry
    try:
        with transaction.atomic():
            call(run_id=run.pk, actor=request.user)
    except APIException as exc:
        messages.warning(request, f"Not done: {exc.detail}")
    else:
        messages.success(request, f"Workflow #{run.pk} {'cancelled' if action == 'cancel' else 'retried'}.")
    return HttpResponseRedirect(reverse("admin:workflows_workflowrun_change", args=[run.pk]))


@require_GET
def approvals_inbox(request: HttpRequest) -> TemplateResponse:
    """Pending approvals of the viewer's projects, each with whether and why it may decide."""
    from django.contrib import admin

    context = {
        **admin.site.each_context(request),
        "title": "Approvals inbox",
        "approvals": inbox.pending_for(request.user),
    }
    return TemplateResponse(request, "console/approvals.html", context)


@require_POST
def approval_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject with a comment; the service's refusals (permission, four eyes, already
    decided) come back as an explained message on the inbox."""
    visible = scope(Approval.objects.all(), request.user, "agent:read")
    if not visible.filter(pk=pk).exists():
        raise Http404("No such approval.")
    approve = request.POST.get("decision") == "approve"
    if request.POST.get("decision") not in {"approve", "reject"}:
        messages.error(request, "Choose approve or reject.")
        return HttpResponseRedirect(reverse("console:approvals"))
    comment = request.POST.get("comment", "")[:5000]
    try:
        with transaction.atomic():
            workflow_services.approval_decide(approval_id=pk, actor=request.user, approve=approve, comment=comment)
    except APIException as exc:
        messages.error(request, f"Approval #{pk} was not decided: {exc.detail}")
    else:
        messages.success(request, f"Approval #{pk} {'approved' if approve else 'rejected'}.")
    return HttpResponseRedirect(reverse("console:approvals"))


def _submit_page(request: HttpRequest, form_class: Any, *, title: str, changelist: str) -> HttpResponse:
    """GET: the empty form; POST: validate as the API does, call the service, go to the new object."""
    from django.contrib import admin

    from console import submit

    if not submit.may_submit(request.user):
        raise PermissionDenied("Submitting needs agent:execute in some project.")
    form = form_class(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        outcome = form.submit()  # the service is atomic: a refusal writes nothing
        if outcome is not None:
            obj, created = outcome
            noun = "Task" if isinstance(obj, Task) else "Workflow run"
            if created:
                messages.success(request, f"{noun} #{obj.pk} submitted.")
            else:
                messages.info(request, f"{noun} #{obj.pk} was already submitted with this idempotency key.")
            url = "admin:agents_task_change" if isinstance(obj, Task) else "admin:workflows_workflowrun_change"
            return HttpResponseRedirect(reverse(url, args=[obj.pk]))
    context = {
        **admin.site.each_context(request),
        "title": title,
        "form": form,
        "changelist_url": reverse(changelist),
        "changelist_name": "Tasks" if "task" in changelist else "Workflow runs",
    }
    return TemplateResponse(request, "console/submit.html", context)


def task_submit_page(request: HttpRequest) -> HttpResponse:
    """Submit a task (``agent:execute`` in the orchestra's project), as ``POST /api/v1/tasks/``."""
    from console.submit import TaskSubmitForm

    return _submit_page(request, TaskSubmitForm, title="Submit a task", changelist="admin:agents_task_changelist")


def workflow_submit_page(request: HttpRequest) -> HttpResponse:
    """Start a workflow run (``agent:execute`` in the orchestra's project), as ``POST /api/v1/workflows/``."""
    from console.submit import WorkflowSubmitForm

    return _submit_page(
        request, WorkflowSubmitForm, title="Start a workflow run", changelist="admin:workflows_workflowrun_changelist"
    )


def _usage_charts(numbers: dict[str, Any]) -> list[tuple[str, Any]]:
    """The token chart (input below, output above) and one cost chart per currency."""
    from console import charts

    fmt = numbers["tick_format"]
    buckets = numbers["series"]["buckets"]
    stamp = "%Y-%m-%d %H:%M" if numbers["period"] == "24h" else "%Y-%m-%d"
    token_bars = [
        {
            "start": b["start"],
            "title": f"{b['start']:{stamp}} UTC: {b['input_tokens']} input, {b['output_tokens']} output tokens",
            "parts": [("ok", b["input_tokens"]), ("run", b["output_tokens"])],
        }
        for b in buckets
    ]
    out = [("Tokens (input, output)", charts.stacked_svg(token_bars, label="tokens", tick_format=fmt,
                                                          peak_label=charts.compact))]  # fmt: skip
    for currency in numbers["series"]["currencies"][:3]:
        bars = [
            {
                "start": b["start"],
                "title": f"{b['start']:{stamp}} UTC: {b['cost'].get(currency, 0):.4f} {currency}",
                "parts": [("cost", b["cost"].get(currency, 0))],
            }
            for b in buckets
        ]
        out.append((f"Cost ({currency})", charts.stacked_svg(bars, label=f"cost in {currency}", tick_format=fmt,
                                                            peak_label=lambda p: f"{p:.2f}")))  # fmt: skip
    return out


@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    """Tokens and cost of the viewer's projects over ``?period=24h|7d|30d`` (400 naming ``period``
    for anything else): charts over time, then tables per project, orchestra, agent and model."""
    from django.contrib import admin

    from console.usage import DEFAULT_PERIOD, PERIODS, usage_numbers

    period = request.GET.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        return HttpResponse(f"period: one of {', '.join(PERIODS)}", status=400, content_type="text/plain")
    numbers = usage_numbers(viewer=request.user, period=period)
    context = {
        **admin.site.each_context(request),
        "title": "LLM usage",
        "usage": numbers,
        "charts": _usage_charts(numbers) if numbers["readable"] else [],
        "periods": list(PERIODS),
        "groups": [(name, numbers["tables"][name]) for name in ("project", "orchestra", "agent", "model")],
    }
    return TemplateResponse(request, "console/usage.html", context)
