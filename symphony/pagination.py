"""Default pagination: bounded page sizes, and a bad page or cursor is a 400 naming the parameter.

DRF answers an invalid or out-of-range ``?page=`` and an undecodable ``?cursor=`` with 404, which
reads as "this list does not exist"; the list is there, the parameter is wrong, so it is a 400
``validation_error`` naming ``page`` or ``cursor``, like every other bad query parameter.
"""

from typing import Any

from django.core.paginator import Page, Paginator
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError

from symphony.filters import INT64


def positive_page_size(request: Any, param: str, default: int, maximum: int) -> int:
    """``?<param>=`` as a page size: absent or empty is ``default``, above ``maximum`` is capped, anything
    but a positive integer is a 400 naming the parameter (DRF would silently use the default)."""
    raw = request.query_params.get(param)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationError({param: ["A positive integer is required."]})
    if int(raw) > INT64:  # the schema's bound for every integer parameter: beyond it is not a page size
        raise ValidationError({param: [f"Ensure this value is less than or equal to {INT64}."]})
    return min(int(raw), maximum)


def _at_least_one(parameters: list[dict[str, Any]], names: set[str], maximum: int) -> list[dict[str, Any]]:
    for parameter in parameters:
        if parameter["name"] in names:
            parameter["schema"] = {**parameter["schema"], "minimum": 1}
            if parameter["name"] != "page":
                parameter["description"] = f"Results per page (default per list; larger than {maximum} is capped)."
    return parameters


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Any) -> int:
        return positive_page_size(request, self.page_size_query_param, self.page_size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        return _at_least_one(parameters, {self.page_query_param, self.page_size_query_param}, self.max_page_size)

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            raise ValidationError({self.page_query_param: [str(exc.detail)]}) from None


class FirstPageCountPaginator(Paginator):
    """Django's paginator, counting a first page that holds every row itself.

    The first page is read with one row more than it shows: when that row is missing, the page is the
    whole list and its length is the count, so the ``COUNT(*)`` query (a tenth of the agents list's
    CPU) is saved on lists of one page. Otherwise, and for any other page, it counts as Django's
    does; the answer (count, links, errors) is the same either way.
    """

    def page(self, number: Any) -> Page:
        if number not in (1, "1") or "count" in self.__dict__ or self.orphans or not self.allow_empty_first_page:
            return super().page(number)
        rows = list(self.object_list[: self.per_page + 1])
        if len(rows) <= self.per_page:
            self.count = len(rows)  # a cached_property: the instance's value wins
        return self._get_page(rows[: self.per_page], 1, self)


class FirstPageCountPagination(PageNumberPagination):
    """``PageNumberPagination`` without the ``COUNT(*)`` on a list of one page (``FirstPageCountPaginator``)."""

    django_paginator_class = FirstPageCountPaginator


class CursorPagination(pagination.CursorPagination):
    """Cursor pagination whose bad cursor is a 400 naming ``cursor`` (see the module docstring)."""

    def get_page_size(self, request: Any) -> int:
        return positive_page_size(request, self.page_size_query_param, self.page_size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        return _at_least_one(parameters, {self.page_size_query_param}, self.max_page_size)

    def decode_cursor(self, request: Any) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None
