"""django-filter FilterSets for the identity API."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import ApiKey, Permission, Role, User


class PermissionFilter(django_filters.FilterSet):
    resource = django_filters.CharFilter(field_name="code", lookup_expr="startswith", label="Resource, e.g. agent")

    class Meta:
        model = Permission
        fields = ["resource"]


class RoleFilter(django_filters.FilterSet):
    permission = django_filters.CharFilter(
        field_name="permissions__code", distinct=True, label="Roles granting this code directly"
    )

    class Meta:
        model = Role
        fields = ["is_system", "permission"]


class UserFilter(django_filters.FilterSet):
    role = django_filters.CharFilter(field_name="roles__name", distinct=True, label="Users holding this role")

    class Meta:
        model = User
        fields = ["is_active", "is_staff", "is_superuser", "role"]


class ApiKeyFilter(django_filters.FilterSet):
    owner = django_filters.CharFilter(field_name="owner__username", label="Owner's username")
    is_active = django_filters.BooleanFilter(method="filter_active", label="Usable now (not revoked or expired)")

    class Meta:
        model = ApiKey
        fields = ["owner", "is_active"]

    def filter_active(self, queryset: QuerySet[ApiKey], name: str, value: bool | None) -> QuerySet[ApiKey]:
        if value is None:
            return queryset
        active = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        return queryset.filter(active) if value else queryset.exclude(active)
