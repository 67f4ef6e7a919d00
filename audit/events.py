"""The catalog of audit event types and their default severities.

``audit.record()`` refuses a type that is not listed here: a typo in an event type would otherwise
make events invisible to every filter an auditor uses.
"""

INFO, WARNING, ERROR, CRITICAL = "info", "warning", "error", "critical"

EVENT_TYPES: dict[str, str] = {
    # authentication
    "auth.login": INFO,
    "auth.logout": INFO,
    "auth.failed": WARNING,
    "auth.sso.login": INFO,
    "auth.sso.failed": WARNING,
    # API keys
    "apikey.created": INFO,
    "apikey.rotated": INFO,
    "apikey.revoked": WARNING,
    "apikey.expired_used": WARNING,
    # authorization
    "authz.permission.denied": WARNING,
    "authz.role.assigned": INFO,
    "authz.role.revoked": INFO,
    "authz.permission.granted": INFO,
    "authz.permission.revoked": INFO,
    # projects
    "project.created": INFO,
    "project.updated": INFO,
    "project.deleted": WARNING,
    # roles and users
    "role.created": INFO,
    "role.updated": INFO,
    "role.deleted": WARNING,
    "user.created": INFO,
    "user.updated": INFO,
    "user.deleted": WARNING,
    # generic resources
    "resource.created": INFO,
    "resource.updated": INFO,
    "resource.deleted": WARNING,
    # agents
    "agent.created": INFO,
    "agent.updated": INFO,
    "agent.deleted": WARNING,
    "agent.heartbeat_lost": WARNING,
    "agent.trust.changed": WARNING,
    # orchestras
    "orchestra.created": INFO,
    "orchestra.updated": INFO,
    "orchestra.deleted": WARNING,
    "orchestra.started": INFO,
    "orchestra.paused": INFO,
    "orchestra.resumed": INFO,
    "orchestra.stopped": INFO,
    "orchestra.member.added": INFO,
    "orchestra.member.removed": INFO,
    # tasks
    "task.submitted": INFO,
    "task.claimed": INFO,
    "task.completed": INFO,
    "task.failed": WARNING,
    "task.cancelled": INFO,
    "task.retried": INFO,
    "task.expired": WARNING,
    "task.deleted": WARNING,
    "task.children_created": INFO,
    # workflows and approvals
    "workflow.submitted": INFO,
    "workflow.steps_unblocked": INFO,
    "workflow.steps_cancelled": WARNING,
    "workflow.succeeded": INFO,
    "workflow.failed": WARNING,
    "workflow.cancelled": INFO,
    "workflow.retried": INFO,
    "approval.requested": INFO,
    "approval.approved": INFO,
    "approval.rejected": WARNING,
    "approval.expired": WARNING,
    # schedules
    "schedule.created": INFO,
    "schedule.updated": INFO,
    "schedule.deleted": WARNING,
    "schedule.paused": INFO,
    "schedule.resumed": INFO,
    "schedule.fired": INFO,
    "schedule.skipped": INFO,
    "schedule.fire_failed": WARNING,
    # flow control: concurrency limits, budgets
    "concurrency_limit.created": INFO,
    "concurrency_limit.updated": INFO,
    "concurrency_limit.deleted": WARNING,
    "budget.created": INFO,
    "budget.updated": INFO,
    "budget.deleted": WARNING,
    "budget.threshold_crossed": WARNING,
    "budget.exhausted": WARNING,
    # webhooks
    "webhook.created": INFO,
    "webhook.updated": INFO,
    "webhook.deleted": WARNING,
    "webhook.secret_rotated": INFO,
    "webhook.redelivered": INFO,
    "webhook.disabled": WARNING,
    # system and security
    "system.config.changed": WARNING,
    "system.started": INFO,
    "security.rate_limit.exceeded": WARNING,
    "security.suspicious_activity": CRITICAL,
    # the audit trail itself
    "audit.exported": INFO,
    "audit.purged": WARNING,
}

SEVERITIES = (INFO, WARNING, ERROR, CRITICAL)
