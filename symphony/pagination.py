"""Default pagination: bounded page sizes, and a bad page or cursor is a 400 naming the parameter.

DRF answers an invalid or out-of-range ``?page=`` and an undecodable ``?cursor=`` with 404, which
reads as "this list does not exist"; the list is there, the parameter is wrong, so it is a 400
``validation_error`` naming ``page`` or ``cursor``, like every other bad query parameter.
"""

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            raise ValidationError({self.page_query_param: [str(exc.detail)]}) from None


class CursorPagination(pagination.CursorPagination):
    """Cursor pagination whose bad cursor is a 400 naming ``cursor`` (see the module docstring)."""

    def decode_cursor(self, request: Any) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None
