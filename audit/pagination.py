"""Cursor pagination for the audit trail: stable under appends, O(1) per page, bounded page size."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from symphony.pagination import CursorPagination


class AuditCursorPagination(CursorPagination):
    # id, not occurred_at: ids follow the chain order, and concurrent writers can commit times
    # slightly out of order.
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        if not raw.isdigit() or int(raw) < 1:
            raise ValidationError({self.page_size_query_param: ["A positive integer is required."]})
        return min(int(raw), self.max_page_size)
