"""django-filter FilterSets of the schedules API."""

from __future__ import annotations

import django_filters

from workflows.scheduling.models import Schedule, ScheduleFiring


class ScheduleFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug", help_text="Project slug.")
    orchestra = django_filters.NumberFilter(field_name="orchestra_id")
    name = django_filters.CharFilter(lookup_expr="icontains")
    enabled = django_filters.BooleanFilter()
    target = django_filters.ChoiceFilter(
        choices=[("task", "task"), ("workflow", "workflow")], method="filter_target", help_text="What it fires."
    )

    class Meta:
        model = Schedule
        fields = ["project", "orchestra", "name", "enabled", "target"]

    def filter_target(self, queryset, name, value):  # type: ignore[no-untyped-def]
        return queryset.filter(task__isnull=value != "task")


class ScheduleFiringFilter(django_filters.FilterSet):
    outcome = django_filters.MultipleChoiceFilter(choices=ScheduleFiring.Outcome.choices)
    trigger = django_filters.ChoiceFilter(choices=ScheduleFiring.Trigger.choices)

    class Meta:
        model = ScheduleFiring
        fields = ["outcome", "trigger"]
