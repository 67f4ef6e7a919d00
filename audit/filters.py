"""The one filter set of the audit trail: the API list, the API export and ``manage.py audit_export``."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from audit.events import EVENT_TYPES
from audit.models import AuditEvent


def validate_event_type(value: str) -> None:
    """Accept a catalog type (``auth.login``) or a prefix pattern (``agent.*``) that matches one."""
    if value.endswith(".*"):
        prefix = value[:-1]
        if not any(name.startswith(prefix) for name in EVENT_TYPES):
            raise ValidationError(f"No event type starts with {prefix!r}.", code="invalid_choice")
    elif value not in EVENT_TYPES:
        raise ValidationError(f"{value!r} is not a known event type.", code="invalid_choice")


class AuditEventFilter(django_filters.FilterSet):
    type = django_filters.CharFilter(
        method="filter_type",
        validators=[validate_event_type],
        help_text="An event type (auth.login) or a prefix ending in .* (agent.*).",
    )
    severity = django_filters.ChoiceFilter(choices=AuditEvent.Severity.choices)
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)
    actor = django_filters.CharFilter(field_name="actor_name", help_text="The actor's username.")
    resource_type = django_filters.CharFilter(help_text="e.g. agents.task")
    resource_id = django_filters.CharFilter()
    project = django_filters.CharFilter(help_text="A project's slug: only that project's events.")
    request_id = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="gte", help_text="ISO-8601; events at or after this time."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="lt", help_text="ISO-8601; events before this time."
    )

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value.endswith(".*"):
            return queryset.filter(event_type__startswith=value[:-1])
        return queryset.filter(event_type=value)


def applied_filters(data: dict[str, str]) -> dict[str, str]:
    """The filter parameters present in ``data``, as given: what an ``audit.exported`` event keeps."""
    return {name: data[name] for name in AuditEventFilter.base_filters if data.get(name) not in (None, "")}
