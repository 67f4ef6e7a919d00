"""The operator console for agents, orchestras and tasks. Every write goes through ``agents.services``."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince
from rest_framework.exceptions import APIException

from accounts.access import ALL, projects_with, scope
from accounts.models import Project
from agents import services
from agents.exceptions import TaskStateConflict
from agents.models import Agent, Orchestra, Task, TaskAttempt, validate_capabilities
from symphony.display import short


def _pretty(value: Any) -> str:
    if value in (None, "", {}, []):
        return "—"
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', json.dumps(value, indent=2))


def _run_per_object(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, verb: str, call) -> None:
    """Call ``call(obj)`` per object, each in its own transaction; report successes and refusals."""
    done, refused = 0, []
    for obj in queryset:
        try:
            with transaction.atomic():
                call(obj)
            done += 1
        except (APIException, ValidationError) as exc:
            refused.append(f"{obj}: {getattr(exc, 'detail', exc)}")
    if done:
        modeladmin.message_user(request, f"{verb} {done} {modeladmin.opts.verbose_name_plural}.", messages.SUCCESS)
    for message in refused:
        modeladmin.message_user(request, message, messages.WARNING)


# --- agents ---------------------------------------------------------------------------------------


class CapabilitiesWidgetField(forms.CharField):
    """Capabilities edited as comma-separated names."""

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(value)
        return value or ""

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return value
        return [item.strip() for item in (value or "").split(",") if item.strip()]

    def validate(self, value: list[str]) -> None:
        validate_capabilities(sorted(set(value)))


class StorableJSONFormField(forms.JSONField):
    """Django's JSON form field, redisplaying JSON that holds a lone surrogate (typed as ``"\\ud800"``)
    escaped: as is, it cannot be encoded into the page, and showing the error was a 500. The model
    field's validator refuses the value itself."""

    def prepare_value(self, value: Any) -> str:
        text = super().prepare_value(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value, cls=self.encoder)  # ASCII, with the surrogate as an escape
        return text


class AgentForm(forms.ModelForm):
    capabilities = CapabilitiesWidgetField(required=False, help_text="Comma-separated, e.g. echo, word_count.")
    metadata = StorableJSONFormField(required=False, help_text=Agent._meta.get_field("metadata").help_text)

    class Meta:
        model = Agent
        fields = ["name", "type", "capabilities", "trust_level", "version", "metadata"]

    def clean_trust_level(self) -> str:
        new = self.cleaned_data["trust_level"]
        old = self.instance.trust_level if self.instance.pk else Agent.TrustLevel.UNTRUSTED
        try:
            services._check_trust_change(actor=self.request_user, old=old, new=new)
        except APIException as exc:
            raise ValidationError(str(exc.detail)) from None
        return new


class TaskAttemptInline(admin.TabularInline):
    model = TaskAttempt
    extra = 0
    can_delete = False
    fields = ["number", "agent", "claimed_at", "finished_at", "outcome"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EffectiveStatusFilter(admin.SimpleListFilter):
    """The status the list shows: offline once the heartbeat is older than the timeout, whatever the
    agent last reported (the stored status alone listed a silent agent as busy)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*Agent.Status.choices, ("online", "Online (any status)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Agent]) -> QuerySet[Agent]:
        if self.value() == "online":
            return queryset.online(Agent.heartbeat_cutoff())
        if self.value() in Agent.Status.values:
            return queryset.with_status(self.value(), Agent.heartbeat_cutoff())
        return queryset


class ProjectScopedAdmin:
    """The admin's view of a project-owned model, scoped like the API: only objects of projects where
    the user holds ``read_code`` (others' are 404: Django finds no such object), foreign-key choices
    limited to those projects, and a project filter once the user sees more than one project."""

    read_code = "agent:read"
    _choice_codes = {Agent: "agent:read", Orchestra: "orchestra:read", Project: None}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope(super().get_queryset(request), request.user, self.read_code)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Reading is per project (the queryset is scoped); changing keeps Django's global check.
        if super().has_view_permission(request, obj):
            return True
        projects = projects_with(request.user, self.read_code)
        return bool(projects) if obj is None else obj.project_id in projects

    def _limited(self, model: Any, request: HttpRequest) -> QuerySet | None:
        if model is Project:
            return scope(Project.objects.order_by("slug"), request.user, self.read_code, field="pk")
        if model in self._choice_codes:
            return scope(model.objects.all(), request.user, self._choice_codes[model])
        return None

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        limited = self._limited(db_field.related_model, request)
        if limited is not None:
            kwargs["queryset"] = limited
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        limited = self._limited(db_field.related_model, request)
        if limited is not None:
            kwargs["queryset"] = limited
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        filters = list(super().get_list_filter(request))
        projects = projects_with(request.user, self.read_code)
        if projects is ALL or len(projects) > 1:
            filters.append(("project", admin.RelatedOnlyFieldListFilter))
        return filters


@admin.register(Agent)
class AgentAdmin(ProjectScopedAdmin, admin.ModelAdmin):
    form = AgentForm
    list_display = ["name", "type", "status_display", "capabilities_display", "trust_level", "orchestra_names", "owner"]
    list_filter = ["type", "trust_level", EffectiveStatusFilter, "orchestras"]
    search_fields = ["name", "version", "api_key__prefix"]
    ordering = ["name"]
    list_select_related = ["owner", "api_key"]
    readonly_fields = ["status_display", "last_heartbeat_at", "owner", "api_key_prefix", "created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return super().get_queryset(request).prefetch_related("orchestras")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request_user = request.user
        return form

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["name", "type", "capabilities", "trust_level", "version", "metadata"]
        return fields if obj is None else [*fields, *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    @admin.display(description="status", ordering="last_heartbeat_at")
    def status_display(self, obj: Agent) -> str:
        if obj.last_heartbeat_at is None:
            return "offline (never seen)"
        return f"{obj.effective_status} (heartbeat {timesince(obj.last_heartbeat_at, timezone.now())} ago)"

    @admin.display(description="capabilities")
    def capabilities_display(self, obj: Agent) -> str:
        return ", ".join(obj.capabilities) or "—"

    @admin.display(description="orchestras")
    def orchestra_names(self, obj: Agent) -> str:
        return ", ".join(o.name for o in obj.orchestras.all()) or "—"

    @admin.display(description="API key prefix")
    def api_key_prefix(self, obj: Agent) -> str:
        return short(obj.api_key.prefix if obj.api_key else "")

    def save_model(self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool) -> None:
        data = {field: form.cleaned_data[field] for field in form.changed_data if field in form.cleaned_data}
        if change:
            services.agent_update(agent=Agent.objects.get(pk=obj.pk), actor=request.user, data=data)
            return
        agent, raw = services.agent_create(
            owner=request.user,
            actor=request.user,
            **{f: form.cleaned_data[f] for f in ["name", "type", "capabilities", "trust_level", "version"]},
            metadata=form.cleaned_data.get("metadata") or {},
        )
        obj.pk, obj.id, obj._state.adding = agent.pk, agent.pk, False
        obj.api_key = agent.api_key
        request._symphony_new_agent_key = raw

    def response_add(self, request: HttpRequest, obj: Agent, post_url_continue: str | None = None) -> HttpResponse:
        """Show the agent's key on this one page, once. It is in no message, cookie, session or log."""
        raw = getattr(request, "_symphony_new_agent_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "agent": obj, "api_key": raw}
        response = TemplateResponse(request, "admin/agents/agent/key_once.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def delete_model(self, request: HttpRequest, obj: Agent) -> None:
        services.agent_delete(agent=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            services.agent_delete(agent=agent, actor=request.user)


# --- orchestras -----------------------------------------------------------------------------------


@admin.register(Orchestra)
class OrchestraAdmin(ProjectScopedAdmin, admin.ModelAdmin):
    read_code = "orchestra:read"

    list_display = ["name", "state", "member_count", "member_names", "updated_at"]
    list_filter = ["state"]
    search_fields = ["name", "description"]
    ordering = ["name"]
    filter_horizontal = ["agents"]
    fields = ["name", "description", "state", "agents", "created_at", "updated_at"]
    readonly_fields = ["state", "created_at", "updated_at"]
    actions = ["start", "pause", "resume", "stop"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Orchestra]:
        return super().get_queryset(request).prefetch_related("agents")

    @admin.display(description="members")
    def member_count(self, obj: Orchestra) -> int:
        return len(obj.agents.all())

    @admin.display(description="agents")
    def member_names(self, obj: Orchestra) -> str:
        return ", ".join(a.name for a in obj.agents.all()) or "—"

    def has_control_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orchestra:control")

    def save_model(self, request: HttpRequest, obj: Orchestra, form: forms.ModelForm, change: bool) -> None:
        agents = list(form.cleaned_data.get("agents") or [])
        if change:
            services.orchestra_update(
                orchestra=Orchestra.objects.get(pk=obj.pk),
                actor=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data.get("description", ""),
                agents=agents,
            )
            return
        created = services.orchestra_create(
            actor=request.user, name=obj.name, description=obj.description, agents=agents
        )
        obj.pk, obj.id, obj._state.adding = created.pk, created.pk, False

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """Membership was saved by the service in ``save_model`` (audited per member)."""

    def delete_model(self, request: HttpRequest, obj: Orchestra) -> None:
        try:
            services.orchestra_delete(orchestra=obj, actor=request.user)
        except APIException as exc:
            self.message_user(request, str(exc.detail), messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Orchestra]) -> None:
        _run_per_object(
            self, request, queryset, "Deleted", lambda o: services.orchestra_delete(orchestra=o, actor=request.user)
        )

    def _transition(self, request: HttpRequest, queryset: QuerySet[Orchestra], action: str, verb: str) -> None:
        _run_per_object(
            self,
            request,
            queryset,
            verb,
            lambda o: services.orchestra_transition(orchestra=o, actor=request.user, action=action),
        )

    @admin.action(permissions=["control"], description="Start selected orchestras")
    def start(self, request: HttpRequest, queryset: QuerySet[Orchestra]) -> None:
        self._transition(request, queryset, "start", "Started")

    @admin.action(permissions=["control"], description="Pause selected orchestras")
    def pause(self, request: HttpRequest, queryset: QuerySet[Orchestra]) -> None:
        self._transition(request, queryset, "pause", "Paused")

    @admin.action(permissions=["control"], description="Resume selected orchestras")
    def resume(self, request: HttpRequest, queryset: QuerySet[Orchestra]) -> None:
        self._transition(request, queryset, "resume", "Resumed")

    @admin.action(permissions=["control"], description="Stop selected orchestras")
    def stop(self, request: HttpRequest, queryset: QuerySet[Orchestra]) -> None:
        self._transition(request, queryset, "stop", "Stopped")


# --- tasks ----------------------------------------------------------------------------------------


def delete_selected_tasks(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> Any:
    """Django's ``delete_selected`` (its confirmation page, which refuses a selection with running
    tasks), with each deletion made by ``task_delete`` (audited) and counted honestly."""
    protected = modeladmin.get_deleted_objects(queryset, request)[3]
    if not request.POST.get("post") or protected:
        return delete_selected(modeladmin, request, queryset)

    def delete(task: Task) -> None:
        modeladmin.log_deletions(request, [task])
        services.task_delete(task_id=task.pk, actor=request.user)

    _run_per_object(modeladmin, request, queryset, "Deleted", delete)
    return None


@admin.register(Task)
class TaskAdmin(ProjectScopedAdmin, admin.ModelAdmin):
    list_display = ["id", "kind", "status", "priority", "orchestra", "agent", "attempts_display", "created_display"]
    list_filter = [
        "status",
        "priority",
        ("orchestra", admin.RelatedOnlyFieldListFilter),
        ("agent", admin.RelatedOnlyFieldListFilter),
        "kind",
    ]
    search_fields = ["=id", "kind", "idempotency_key"]
    ordering = ["-created_at", "-id"]
    list_select_related = ["orchestra", "agent"]
    show_full_result_count = False
    actions = ["cancel", "retry"]
    inlines = [TaskAttemptInline]
    fields = [
        "kind",
        "status",
        "priority",
        "orchestra",
        "target_agent",
        "agent",
        "required_capabilities",
        "attempts",
        "max_attempts",
        "lease_expires_at",
        "input_pretty",
        "result_pretty",
        "error",
        "idempotency_key_short",
        "traceparent_short",
        "submitter",
        "created_at",
        "started_at",
        "claimed_at",
        "finished_at",
    ]
    readonly_fields = fields

    @admin.display(description="attempts")
    def attempts_display(self, obj: Task) -> str:
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description="created (UTC)", ordering="created_at")
    def created_display(self, obj: Task) -> str:
        # Short, so the list fits a 1280-pixel screen beside the navigation and the filters.
        return f"{obj.created_at:%m-%d %H:%M:%S}"

    @admin.display(description="idempotency key")
    def idempotency_key_short(self, obj: Task) -> str:
        return short(obj.idempotency_key, 24)

    @admin.display(description="traceparent")
    def traceparent_short(self, obj: Task) -> str:
        return short(obj.traceparent, 20)

    @admin.display(description="input")
    def input_pretty(self, obj: Task) -> str:
        return _pretty(obj.input)

    @admin.display(description="result")
    def result_pretty(self, obj: Task) -> str:
        return _pretty(obj.result)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks are submitted through the API (POST /api/v1/tasks/)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Nothing on a task is edited here: it changes through the protocol and the actions below. So
        # its page is a view page, with no Save button to claim a change that never happened.
        return False

    def has_execute_permission(self, request: HttpRequest) -> bool:
        """Cancel and retry: the API's ``agent:execute`` (``agents.change_task``)."""
        return request.user.has_perm("agents.change_task")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if "delete_selected" in actions:  # the confirmation page posts back to this name
            actions["delete_selected"] = (delete_selected_tasks, "delete_selected", actions["delete_selected"][2])
        return actions

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[Any]]:
        """A running task is protected: its holder is still working on it (cancel it first)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        running = [f"{task}: running, cancel it first" for task in objs if task.status == Task.Status.RUNNING]
        return deleted, counts, perms_needed, [*protected, *running]

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        services.task_delete(task_id=obj.pk, actor=request.user)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        try:
            with transaction.atomic():
                return super().delete_view(request, object_id, extra_context)
        except TaskStateConflict as exc:  # claimed between the confirmation page and now
            self.message_user(request, str(exc.detail), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:agents_task_change", args=[object_id]))

    @admin.action(permissions=["execute"], description="Cancel selected tasks")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        _run_per_object(
            self,
            request,
            queryset,
            "Cancelled",
            lambda t: services.task_cancel(task_id=t.pk, actor=request.user, reason="admin"),
        )

    @admin.action(permissions=["execute"], description="Retry selected tasks")
    def retry(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        _run_per_object(
            self, request, queryset, "Retried", lambda t: services.task_retry(task_id=t.pk, actor=request.user)
        )


from agents import flow_admin  # noqa: E402,F401 - registers the flow-control admin
