"""``GET /api/v1/``: the API root, linking every resource (and the schema and its docs)."""

from __future__ import annotations

from django.conf import settings
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

#: Routes that are not a resource of their own (the lists' names end in -list; these are named).
_SINGLE_ROUTES = {"me": "me", "access-check": "access/check"}


def _api_route_names() -> dict[str, str]:
    """Resource name (its path under /api/v1/) -> URL name, from the URLconf: a new router shows up here."""
    names: dict[str, str] = {}
    for pattern in _api_patterns():
        name = getattr(pattern, "name", None) or ""
        if name.endswith("-list"):
            route = str(pattern.pattern).lstrip("^").split("/")[0]
            names[route] = name
        elif name in _SINGLE_ROUTES:
            names[_SINGLE_ROUTES[name]] = name
    return dict(sorted(names.items()))


def _api_patterns() -> list[URLPattern]:
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and str(entry.pattern) == "api/v1/":
            return list(_flatten(entry.url_patterns))
    return []


def _flatten(patterns: list) -> list[URLPattern]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _flatten(entry.url_patterns)
        else:
            yield entry


class ApiRootView(APIView):
    """Links to every resource of the API, and to the OpenAPI schema and its browsable docs. Public:
    it names nothing that the schema does not already show."""

    required_perms = {"GET": "public"}  # accounts.permissions.PUBLIC

    @extend_schema(
        responses=inline_serializer(
            "ApiRoot",
            fields={
                "version": serializers.CharField(help_text="Symphony's version."),
                "resources": serializers.DictField(
                    child=serializers.URLField(), help_text="Resource name -> its URL (a list or a single view)."
                ),
                "schema": serializers.URLField(help_text="The OpenAPI 3 schema."),
                "docs": serializers.URLField(help_text="Swagger UI over the schema."),
            },
        )
    )
    def get(self, request: Request) -> Response:
        resources = {}
        for resource, name in _api_route_names().items():
            try:
                resources[resource] = request.build_absolute_uri(reverse(name))
            except NoReverseMatch:  # a route that needs arguments is not a resource root
                continue
        return Response(
            {
                "version": settings.VERSION,
                "resources": resources,
                "schema": request.build_absolute_uri(reverse("schema")),
                "docs": request.build_absolute_uri(reverse("swagger-ui")),
            }
        )
