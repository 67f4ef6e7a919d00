"""django-filter FilterSets for the agents API."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from agents.models import Agent, Budget, ConcurrencyLimit, Orchestra, Task


class AgentFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=Agent.Status.choices, method="filter_status", help_text="Effective status (offline when stale)."
    )
    orchestra = django_filters.NumberFilter(field_name="orchestras", help_text="Member of this orchestra id.")
    name = django_filters.CharFilter(lookup_expr="icontains")
    project = django_filters.CharFilter(field_name="project__slug", help_text="Only this project's (slug).")

    class Meta:
        model = Agent
        fields = ["type", "trust_level", "status", "orchestra", "name", "project"]

    def filter_status(self, queryset: QuerySet[Agent], name: str, value: str) -> QuerySet[Agent]:
        return queryset.with_status(value, Agent.heartbeat_cutoff())


class OrchestraFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    project = django_filters.CharFilter(field_name="project__slug", help_text="Only this project's (slug).")

    class Meta:
        model = Orchestra
        fields = ["state", "name", "project"]


class TaskFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Task.Status.choices)
    orchestra = django_filters.NumberFilter(field_name="orchestra_id")
    agent = django_filters.NumberFilter(field_name="agent_id", help_text="The agent holding (or that last held) it.")
    target_agent = django_filters.NumberFilter(field_name="target_agent_id")
    kind = django_filters.CharFilter()
    project = django_filters.CharFilter(field_name="project__slug", help_text="Only this project's (slug).")
    priority = django_filters.ChoiceFilter(
        choices=[(label, label) for _, label in Task.Priority.choices], method="filter_priority"
    )
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Task
        fields = [
            "status",
            "orchestra",
            "agent",
            "target_agent",
            "kind",
            "priority",
            "created_after",
            "created_before",
            "project",
        ]

    def filter_priority(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        return queryset.filter(priority=next(v for v, label in Task.Priority.choices if label == value))


class ConcurrencyLimitFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug", help_text="Project slug.")
    key = django_filters.CharFilter()

    class Meta:
        model = ConcurrencyLimit
        fields = ["project", "key"]


class BudgetFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug", help_text="Project slug.")

    class Meta:
        model = Budget
        fields = ["project", "orchestra", "period", "currency"]
