"""django-filter FilterSets for the workflows API."""

from __future__ import annotations

import django_filters

from workflows.models import Approval, WorkflowRun


class WorkflowRunFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=WorkflowRun.Status.choices)
    orchestra = django_filters.NumberFilter(field_name="orchestra_id")
    name = django_filters.CharFilter(lookup_expr="icontains")
    project = django_filters.CharFilter(field_name="project__slug", help_text="Project slug.")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte", help_text="Created since.")

    class Meta:
        model = WorkflowRun
        fields = ["project", "status", "orchestra", "name", "since"]


class ApprovalFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Approval.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Approval.Kind.choices)
    project = django_filters.CharFilter(field_name="project__slug", help_text="Project slug.")
    run = django_filters.NumberFilter(field_name="run_id")
    task = django_filters.NumberFilter(field_name="task_id")

    class Meta:
        model = Approval
        fields = ["project", "status", "kind", "run", "task"]
