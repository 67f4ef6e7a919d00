"""Submitting a task or a workflow run from the console, with the API's rules.

The forms only turn HTML fields into the API's body (JSON parsed, capabilities split on commas) and
limit the orchestra to those of projects where the user holds ``agent:execute``: another project's
orchestra is "not one of the available choices", as the API's ``_require_visible`` refuses it. The
body is then validated by the API's own input serializers (``TaskSubmitSerializer``,
``WorkflowSubmitSerializer``) and handed to the same services (``task_submit``, ``workflow_submit``),
which audit the submission. Every refusal lands on the field it names.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import APIException
from rest_framework.exceptions import ValidationError as DRFValidationError

from accounts.access import projects_with, scope
from agents.models import Orchestra, Task
from agents.serializers import TaskSubmitSerializer
from workflows.serializers import WorkflowSubmitSerializer

PRIORITIES = [(label, label) for _, label in Task.Priority.choices]


def submittable_orchestras(user: Any) -> Any:
    """Orchestras of the projects where ``user`` holds ``agent:execute``."""
    orchestras = Orchestra.objects.select_related("project").order_by("project__slug", "name")
    return scope(orchestras, user, "agent:execute")


def may_submit(user: Any) -> bool:
    """Whether ``user`` may submit anywhere (the buttons and the pages ask this)."""
    return bool(projects_with(user, "agent:execute"))


class OrchestraChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Orchestra) -> str:
        return f"{obj.project.slug} / {obj.name} ({obj.state})"


class JSONText(forms.CharField):
    """JSON typed in a text area; invalid JSON is an error on this field naming line and column."""

    widget = forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField console-mono"})

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DjangoValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None


def _messages(detail: Any, prefix: str = "") -> list[str]:
    """DRF's nested error detail flattened to readable lines (``steps[1].kind: ...``)."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out += _messages(value, name)
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return [f"{prefix}: {item}" if prefix else str(item) for item in detail]
        out = []
        for index, item in enumerate(detail):
            if item:
                out += _messages(item, f"{prefix}[{index}]")
        return out
    return [f"{prefix}: {detail}" if prefix else str(detail)]


class _SubmitForm(forms.Form):
    """Validates through ``serializer_class``; ``submit`` calls the service and maps its refusals."""

    serializer_class: Any = None

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["orchestra"].queryset = submittable_orchestras(user)
        self.validated: dict[str, Any] = {}

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        serializer = self.serializer_class(data=self.body())
        if serializer.is_valid():
            self.validated = dict(serializer.validated_data)
        else:
            self.add_detail(serializer.errors)
        return cleaned

    def add_detail(self, detail: Any) -> None:
        """Errors keyed by field (DRF's or Django's) onto the form's fields, the rest above the form."""
        if not isinstance(detail, dict):
            self.add_error(None, _messages(detail))
            return
        for key, value in detail.items():
            field = key.split(".", 1)[0].split("[", 1)[0]
            lines = _messages(value) if field == key else _messages(value, key)
            self.add_error(field if field in self.fields else None, lines)

    def submit(self) -> tuple[Any, bool] | None:
        """Call the service; None (with the errors on the form) when it refuses."""
        try:
            return self.call_service()
        except DjangoValidationError as exc:
            self.add_detail(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
        except DRFValidationError as exc:
            self.add_detail(exc.detail)
        except APIException as exc:
            extra = getattr(exc, "extra_details", None)
            if isinstance(extra, dict) and extra:
                self.add_detail({key: [f"{exc.detail}"] for key in extra})
            else:
                self.add_error(None, str(exc.detail))
        return None

    def call_service(self) -> tuple[Any, bool]:
        raise NotImplementedError


class TaskSubmitForm(_SubmitForm):
    orchestra = OrchestraChoice(queryset=Orchestra.objects.none(), help_text="Only projects where you may execute.")
    kind = forms.CharField(max_length=100, help_text="The handler agents run, e.g. echo.")
    input = JSONText(required=False, initial="{}", help_text="A JSON object (size-limited).")
    priority = forms.ChoiceField(choices=PRIORITIES, initial="normal")
    required_capabilities = forms.CharField(required=False, help_text="Comma-separated, e.g. gpu, python.")
    max_attempts = forms.IntegerField(initial=3, help_text="1 to 100.")
    idempotency_key = forms.CharField(required=False, help_text="The same key again returns the earlier task.")
    concurrency_key = forms.CharField(required=False)
    fairness_key = forms.CharField(required=False, help_text="Default: you.")

    serializer_class = TaskSubmitSerializer

    def body(self) -> dict[str, Any]:
        data = self.cleaned_data
        capabilities = [c.strip() for c in (data.get("required_capabilities") or "").split(",") if c.strip()]
        body = {
            "orchestra": data["orchestra"].pk,
            "kind": data["kind"],
            "input": {} if data.get("input") is None else data["input"],
            "priority": data["priority"],
            "required_capabilities": capabilities,
            "max_attempts": data["max_attempts"],
            "concurrency_key": data.get("concurrency_key") or "",
            "fairness_key": data.get("fairness_key") or "",
        }
        if data.get("idempotency_key"):
            body["idempotency_key"] = data["idempotency_key"]
        return body

    def call_service(self) -> tuple[Task, bool]:
        from agents import services
        from agents.tracing import submission_span, submission_traceparent

        data = self.validated
        with submission_span(kind=data["kind"]):
            return services.task_submit(submitter=self.user, traceparent=submission_traceparent(None), **data)


STEPS_EXAMPLE = '[{"key": "fetch", "kind": "echo"}, {"key": "sum", "kind": "echo", "depends_on": ["fetch"]}]'


class WorkflowSubmitForm(_SubmitForm):
    orchestra = OrchestraChoice(queryset=Orchestra.objects.none(), help_text="Only projects where you may execute.")
    name = forms.CharField(max_length=200)
    steps = JSONText(help_text=f"A JSON list of steps, as the API takes them, e.g. {STEPS_EXAMPLE}")
    idempotency_key = forms.CharField(required=False, help_text="The same key again returns the earlier run.")

    serializer_class = WorkflowSubmitSerializer

    def body(self) -> dict[str, Any]:
        data = self.cleaned_data
        body = {"orchestra": data["orchestra"].pk, "name": data["name"], "steps": data["steps"]}
        if data.get("idempotency_key"):
            body["idempotency_key"] = data["idempotency_key"]
        return body

    def call_service(self) -> tuple[Any, bool]:
        from workflows import services

        return services.workflow_submit(submitter=self.user, **self.validated)
