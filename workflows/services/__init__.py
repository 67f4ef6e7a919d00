"""Writes on workflows and approvals, each audited in its own transaction (one module per concern)."""

from workflows.services.approvals import approval_decide, approval_expire_due, approval_request
from workflows.services.runs import workflow_cancel, workflow_retry, workflow_submit

__all__ = [
    "approval_decide",
    "approval_expire_due",
    "approval_request",
    "workflow_cancel",
    "workflow_retry",
    "workflow_submit",
]
