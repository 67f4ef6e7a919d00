"""Human approvals: approval steps, questions asked mid-task, decisions and timeouts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

import audit
from agents import hooks
from agents import services as agent_services
from agents.models import Agent, Task
from workflows.exceptions import ApprovalStateConflict, ApproverPermissionDenied, SubmitterCannotDecide
from workflows.models import Approval


def _expiry(approval: Approval, now: datetime) -> datetime | None:
    return now + timedelta(seconds=approval.timeout_seconds) if approval.timeout_seconds else None


def approvals_activate(*, task_ids: Any, now: datetime) -> int:
    """Ask the approvals of steps that just reached ``waiting_approval``; return how many."""
    count = 0
    blocked = Approval.objects.filter(
        task_id__in=task_ids, task__status=Task.Status.WAITING_APPROVAL, status=Approval.Status.BLOCKED
    )
    for approval in blocked:
        approval.status, approval.requested_at, approval.expires_at = (
            Approval.Status.PENDING,
            now,
            _expiry(approval, now),
        )
        approval.save(update_fields=["status", "requested_at", "expires_at"])
        audit.record("approval.requested", resource=approval, details=_summary(approval))
        count += 1
    return count


def _summary(approval: Approval) -> dict[str, Any]:
    return {
        "task": approval.task_id,
        "run": approval.run_id,
        "kind": approval.kind,
        "approvers": approval.approvers,
        "expires_at": approval.expires_at.isoformat() if approval.expires_at else None,
    }


@transaction.atomic
def approval_request(
    *, task_id: int, agent: Agent, attempt: int, question: str, data: dict[str, Any],
    approvers: str = "orchestra:control", timeout_seconds: int | None = None,
) -> Approval:  # fmt: skip
    """The holder of a task asks a human: the lease is released, the task waits in ``waiting_approval``,
    and once decided goes back to ``pending`` with ``approval`` in its next claim. Raises
    ``LeaseLost``/``TaskCancelled`` (409) or ``NotTaskHolder`` (403)."""
    task = agent_services.task_park(task_id=task_id, agent=agent, attempt=attempt)
    now = timezone.now()
    approval = Approval(
        project_id=task.project_id, task=task, run_id=task.workflow, kind=Approval.Kind.MID_TASK,
        status=Approval.Status.PENDING,
        approvers=approvers, timeout_seconds=timeout_seconds, question=question, data=data,
        submitter_id=task.submitter_id, requested_by_agent=agent.name, requested_at=now,
    )  # fmt: skip
    approval.expires_at = _expiry(approval, now)
    approval.save()
    audit.record("approval.requested", resource=approval, details={**_summary(approval), "agent": agent.name})
    return approval


@transaction.atomic
def approval_decide(*, approval_id: int, actor: Any, approve: bool, comment: str = "") -> Approval:
    """Approve or reject a pending approval. An approval step succeeds (approve) or fails (reject, and its
    dependents are cancelled); a mid-task question resumes its task with the decision in the next claim.

    Raises ``Approval.DoesNotExist``, ``ApprovalStateConflict`` (409), ``ApproverPermissionDenied`` (403,
    naming the permission) or ``SubmitterCannotDecide`` (403, distinct_from_submitter).
    """
    approval = Approval.objects.select_for_update().select_related("task").get(pk=approval_id)
    if approval.status != Approval.Status.PENDING:
        raise ApprovalStateConflict(f"This approval is {approval.status}: only pending approvals can be decided.")
    if not actor.has_perm(approval.approvers, approval):  # in the approval's project
        raise ApproverPermissionDenied(f"Deciding this approval needs the '{approval.approvers}' permission.")
    if approval.distinct_from_submitter and approval.submitter_id == actor.pk:
        raise SubmitterCannotDecide()
    now = timezone.now()
    approval.status = Approval.Status.APPROVED if approve else Approval.Status.REJECTED
    approval.decided_by, approval.decided_at, approval.comment = actor, now, comment
    approval.save(update_fields=["status", "decided_by", "decided_at", "comment"])
    audit.record(
        f"approval.{approval.status}",
        actor=actor,
        resource=approval,
        details={**_summary(approval), "decided_at": now.isoformat(), "comment": comment},
    )
    _apply(approval, decision=approval.status, by=getattr(actor, "username", ""), now=now)
    return approval


def _apply(approval: Approval, *, decision: str, by: str, now: datetime) -> None:
    outcome = {"decision": decision, "decided_by": by, "comment": approval.comment, "approval": approval.pk}
    if approval.kind == Approval.Kind.MID_TASK:
        agent_services.task_resume(task_id=approval.task_id, context={"approval": outcome})
        return
    approved = decision == Approval.Status.APPROVED
    changes: dict[str, Any] = {
        "status": Task.Status.SUCCEEDED if approved else Task.Status.FAILED,
        "result": outcome,
        "error": "" if approved else f"Approval {decision} by {by or 'the timeout'}: {approval.comment}"[:10000],
    }
    if Task.objects.filter(pk=approval.task_id, status=Task.Status.WAITING_APPROVAL).update(
        **changes, finished_at=now, updated_at=now
    ):
        hooks.run_task_finished(Task.objects.get(pk=approval.task_id))


def approval_expire_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expire pending approvals past their timeout: the step (or asking task) fails. Several sweepers
    are safe (``SKIP LOCKED``). Called by ``reap_tasks`` and any scheduler. Returns how many."""
    now = now or timezone.now()
    with transaction.atomic():
        due: QuerySet = Approval.objects.filter(status=Approval.Status.PENDING, expires_at__lt=now).order_by(
            "expires_at"
        )
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        approvals = list(due[:limit])
        for approval in approvals:
            approval.status = Approval.Status.EXPIRED
            approval.decided_at = now
            approval.save(update_fields=["status", "decided_at"])
            audit.record("approval.expired", resource=approval, details=_summary(approval))
            if approval.kind == Approval.Kind.MID_TASK:
                # Nobody answered: the task fails rather than running on without its answer.
                Task.objects.filter(pk=approval.task_id, status=Task.Status.WAITING_APPROVAL).update(
                    status=Task.Status.FAILED, error="The approval it asked for timed out.", finished_at=now
                )
                task = Task.objects.get(pk=approval.task_id)
                if task.status == Task.Status.FAILED:
                    hooks.run_task_finished(task)
            else:
                _apply(approval, decision=Approval.Status.EXPIRED, by="", now=now)
    return len(approvals)
