"""Cursor pagination for the audit trail: stable under appends, O(1) per page, bounded page size."""

from __future__ import annotations

from symphony.pagination import CursorPagination


class AuditCursorPagination(CursorPagination):
    # id, not occurred_at: ids follow the chain order, and concurrent writers can commit times
    # slightly out of order.
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
