"""django-filter FilterSets for the webhooks API."""

from __future__ import annotations

import django_filters

from webhooks.models import Delivery, Webhook


class WebhookFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug", help_text="Project slug.")

    class Meta:
        model = Webhook
        fields = ["project", "enabled"]


class DeliveryFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="webhook__project__slug", help_text="Project slug.")
    webhook = django_filters.NumberFilter(field_name="webhook_id")
    status = django_filters.MultipleChoiceFilter(choices=Delivery.Status.choices)
    event_type = django_filters.CharFilter()

    class Meta:
        model = Delivery
        fields = ["project", "webhook", "status", "event_type"]
