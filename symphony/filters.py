"""The query-parameter policy of list endpoints: an unknown parameter is a 400 naming it.

Silently ignoring ``?stauts=failed`` returns every row, which a caller takes for the filtered answer;
refusing it makes the typo visible. The known parameters are those the view's filter backends and
paginator document (django-filter fields, search, ordering, page, page_size, cursor, limit, offset),
DRF's ``format``, and any listed in the view's ``extra_query_params``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request
from rest_framework.settings import api_settings


class UnknownQueryParameter(exceptions.ValidationError):
    default_code = "unknown_query_parameter"


class StrictQueryParamsFilter(BaseFilterBackend):
    """Refuse unknown query parameters on ``list`` actions (400, ``unknown_query_parameter``)."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        if getattr(view, "action", None) != "list":
            return queryset
        unknown = sorted(set(request.query_params) - known_query_params(view, queryset))
        if unknown:
            raise UnknownQueryParameter(
                {name: ["Unknown query parameter."] for name in unknown}, code="unknown_query_parameter"
            )
        return queryset

    def get_schema_operation_parameters(self, view: Any) -> list:
        return []


def known_query_params(view: Any, queryset: QuerySet | None = None) -> set[str]:
    """Every query parameter the view documents and understands."""
    known = {api_settings.URL_FORMAT_OVERRIDE or "format", *getattr(view, "extra_query_params", ())}
    for backend_class in getattr(view, "filter_backends", ()):
        backend = backend_class()
        if isinstance(backend, DjangoFilterBackend):
            known.update(_filterset_params(backend, view, queryset))
        for attr in ("search_param", "ordering_param"):
            if getattr(backend, attr, None):
                known.add(getattr(backend, attr))
    paginator = getattr(view, "paginator", None)
    if paginator is not None:
        for attr in (
            "page_query_param",
            "page_size_query_param",
            "cursor_query_param",
            "limit_query_param",
            "offset_query_param",
        ):
            if getattr(paginator, attr, None):
                known.add(getattr(paginator, attr))
    return known


def _filterset_params(backend: DjangoFilterBackend, view: Any, queryset: QuerySet | None) -> set[str]:
    """The names a django-filter FilterSet reads, with range widgets' suffixes (``_min``, ``_after``)."""
    filterset_class = backend.get_filterset_class(view, queryset)
    if filterset_class is None:
        return set()
    names = set()
    for name, filter_ in filterset_class.base_filters.items():
        names.add(name)
        widget = filter_.extra.get("widget") or getattr(filter_.field_class, "widget", None)
        suffixes = getattr(widget, "suffixes", None)
        names.update(f"{name}_{suffix}" if suffix else name for suffix in suffixes or ())
    return names
