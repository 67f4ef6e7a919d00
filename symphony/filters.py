"""The query-parameter policy of list endpoints: an unknown parameter is a 400 naming it.

Silently ignoring ``?stauts=failed`` returns every row, which a caller takes for the filtered answer;
refusing it makes the typo visible. The known parameters are those the view's filter backends and
paginator document (django-filter fields, search, ordering, page, page_size, cursor, limit, offset),
DRF's ``format``, and any listed in the view's ``extra_query_params``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions
from rest_framework import filters as drf_filters
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
        if isinstance(backend, drf_filters.SearchFilter) and getattr(view, "search_fields", None):
            known.add(backend.search_param)
        if isinstance(backend, drf_filters.OrderingFilter) and getattr(view, "ordering_fields", None):
            known.add(backend.ordering_param)
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


#: The widest integer every supported database stores (PostgreSQL bigint, SQLite INTEGER).
INT64 = 2**63 - 1
_INTEGER_FIELDS = (forms.IntegerField, forms.DecimalField, forms.ModelChoiceField, forms.ModelMultipleChoiceField)


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, refusing what the database would answer with a 500.

    - A number beyond 64 bits in an integer or model-choice filter: 400 naming the filter (SQLite raises
      OverflowError while binding it, even inside form validation of a ModelChoiceField).
    - An aware datetime is converted to UTC before querying: Python accepts offsets up to ±24 h,
      PostgreSQL only up to ±15:59 ("time zone displacement out of range").
    """

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        if not set(request.query_params) & _filterset_params(self, view, queryset):
            # No filter is given a value, so each would leave the queryset as it is: skip building
            # the FilterSet and its form (deep copies of every filter and field on each request,
            # about a tenth of the agents list's CPU). Any other parameter is StrictQueryParamsFilter's.
            return queryset
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        _refuse_out_of_range(filterset)
        _refuse_bad_booleans(filterset)
        if not filterset.is_valid() and self.raise_exception:
            # Not django-filter's translate_validation: it %-formats each message again, so a message
            # quoting the input ("'50%j' is not a known event type") raised TypeError, a 500.
            raise exceptions.ValidationError({name: list(errors) for name, errors in filterset.errors.items()})
        for name, value in list(filterset.form.cleaned_data.items()):
            filterset.form.cleaned_data[name] = _to_utc(value)
        return filterset.qs


def _refuse_out_of_range(filterset: Any) -> None:
    errors = {}
    for name, filter_ in filterset.filters.items():
        if not issubclass(filter_.field_class, _INTEGER_FIELDS):
            continue
        for raw in filterset.data.getlist(name) if hasattr(filterset.data, "getlist") else []:
            for part in str(raw).split(","):
                try:
                    number = Decimal(part.strip())
                except InvalidOperation:
                    continue  # not a number: the form reports it
                if number.is_finite() and abs(number) > INT64:
                    errors[name] = [f"Ensure this value is between {-INT64} and {INT64}."]
    if errors:
        raise exceptions.ValidationError(errors)


_BOOLEANS = {"true", "false", "1", "0", ""}


def _refuse_bad_booleans(filterset: Any) -> None:
    """A boolean filter given anything but true/false/1/0 is a 400 naming it (django-filter's widget turns
    it into "no filter", answering every row as if filtered). Empty stays "no filter": HTML forms send it."""
    errors = {}
    for name, filter_ in filterset.filters.items():
        if not issubclass(filter_.field_class, forms.NullBooleanField):
            continue
        for raw in filterset.data.getlist(name) if hasattr(filterset.data, "getlist") else []:
            if str(raw).strip().lower() not in _BOOLEANS:
                errors[name] = ["Must be true or false."]
    if errors:
        raise exceptions.ValidationError(errors)


def _to_utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, slice):  # range filters clean to slice(start, stop)
        return slice(_to_utc(value.start), _to_utc(value.stop))
    return value


class InvalidOrdering(exceptions.ValidationError):
    default_code = "invalid_ordering"


class OrderingFilter(drf_filters.OrderingFilter):
    """``?ordering=field,-other`` over the view's ``ordering_fields`` only; a view without them has none.

    DRF's own filter drops a field it does not know and answers in the default order, which a caller
    takes for the order asked; here it is a 400 naming ``ordering`` and listing the allowed terms, as
    an unknown query parameter is. ``id`` breaks ties, so pages never repeat or skip a row.
    """

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        if getattr(view, "action", None) != "list":
            return queryset  # an object's URL is not a list: ?ordering= there is ignored, never a 400
        return super().filter_queryset(request, queryset, view)

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> Any:
        fields = getattr(view, "ordering_fields", None)
        raw = request.query_params.get(self.ordering_param)
        if not fields or raw is None or getattr(view, "action", None) != "list":
            # Cursor pagination asks here too: without an ordering of the view's, keep the paginator's.
            default = self.get_default_ordering(view)
            paginator_ordering = getattr(getattr(view, "paginator", None), "ordering", None)
            return default or ((paginator_ordering,) if isinstance(paginator_ordering, str) else paginator_ordering)
        terms = [term.strip() for term in raw.split(",")]
        bad = [term for term in terms if term.lstrip("-") not in fields]
        if bad or not raw.strip():
            allowed = ", ".join(allowed_ordering(view))
            raise InvalidOrdering(
                {
                    self.ordering_param: [
                        f"Unknown ordering {', '.join(repr(t) for t in bad) or repr(raw)}; allowed: {allowed}."
                    ]
                }
            )
        if not any(term.lstrip("-") == "id" for term in terms):
            terms.append("-id" if terms[0].startswith("-") else "id")
        return terms

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        fields = getattr(view, "ordering_fields", None)
        if not fields or getattr(view, "action", "list") != "list":
            return []
        alternatives = "|".join(sorted(fields))
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": "Sort by these fields, comma-separated; a leading '-' sorts descending "
                f"(ties broken by id). Allowed: {', '.join(allowed_ordering(view))}.",
                "schema": {"type": "string", "pattern": f"^-?({alternatives})(,-?({alternatives}))*$"},
            }
        ]


def allowed_ordering(view: Any) -> list[str]:
    """Every accepted ordering term of the view: each field ascending and descending."""
    return [term for field in sorted(getattr(view, "ordering_fields", None) or ()) for term in (field, f"-{field}")]


class SearchFilter(drf_filters.SearchFilter):
    """``?search=words`` over the view's ``search_fields`` (case-insensitive, every word must match one of
    them); documented, and accepted as a parameter, only where the view declares ``search_fields``."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        if getattr(view, "action", None) != "list":
            return queryset  # an object's URL is looked up by its id alone
        return super().filter_queryset(request, queryset, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        fields = getattr(view, "search_fields", None)
        if not fields or getattr(view, "action", "list") != "list":
            return []
        names = ", ".join(field.lstrip("^=@$").replace("__", ".") for field in fields)
        return [
            {
                "name": self.search_param,
                "required": False,
                "in": "query",
                "description": f"Words that must each appear (case-insensitive) in one of: {names}.",
                "schema": {"type": "string"},
            }
        ]
