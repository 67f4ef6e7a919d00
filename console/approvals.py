"""The approvals inbox: what is waiting for a decision in the viewer's projects, and whether the viewer
may give it (the same rules ``workflows.services.approval_decide`` enforces, said before the click)."""

from __future__ import annotations

from typing import Any

from accounts.access import scope
from workflows.models import Approval

MAX_INBOX = 200


def refusal_reason(approval: Approval, viewer: Any) -> str:
    """Why ``viewer`` cannot decide ``approval`` ("" when it can): the approvers permission, or four eyes."""
    if not viewer.has_perm(approval.approvers, approval):
        return f"Deciding needs the '{approval.approvers}' permission, which you do not hold."
    if approval.distinct_from_submitter and approval.submitter_id == viewer.pk:
        return "Four eyes: you submitted this work, so someone else must decide (distinct_from_submitter)."
    return ""


def pending_for(viewer: Any) -> list[Approval]:
    """Pending approvals of projects where ``viewer`` holds ``agent:read``, oldest request first,
    each with ``refusal`` set (at most 200)."""
    rows = list(
        scope(Approval.objects.filter(status=Approval.Status.PENDING), viewer, "agent:read")
        .select_related("project", "task", "run", "submitter")
        .order_by("requested_at", "id")[:MAX_INBOX]
    )
    for approval in rows:
        approval.refusal = refusal_reason(approval, viewer)
    return rows
