"""Domain errors of workflows and approvals."""

from rest_framework import exceptions, status


class WorkflowStateConflict(exceptions.APIException):
    """The run's status does not allow this action (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "workflow_state_conflict"
    default_detail = "The workflow's status does not allow this action."


class ApprovalStateConflict(exceptions.APIException):
    """The approval was already decided, expired or cancelled (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "approval_state_conflict"
    default_detail = "This approval is no longer pending."


class ApproverPermissionDenied(exceptions.PermissionDenied):
    """The caller lacks the approval's approvers permission (403)."""

    default_code = "approver_permission_required"


class SubmitterCannotDecide(exceptions.PermissionDenied):
    """distinct_from_submitter: the submitter may not decide (403)."""

    default_code = "submitter_cannot_decide"
    default_detail = (
        "This approval must be decided by someone other than who submitted the work (distinct_from_submitter)."
    )


class ScheduleOverlap(exceptions.APIException):
    """overlap=skip and the previous firing's task or run is unfinished (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "schedule_overlap"
    default_detail = "The previous firing's work is unfinished and the schedule's overlap is 'skip'."
