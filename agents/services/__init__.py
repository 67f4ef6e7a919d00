"""Writes on agents, orchestras and tasks. Each one is audited inside its own transaction.

One module per entity; everything is re-exported here, so callers write ``services.task_claim(...)``.
"""

from agents.services.agents import (
    AGENT_KEY_SCOPES,
    AGENT_UPDATABLE_FIELDS,
    _check_trust_change,
    agent_create,
    agent_delete,
    agent_heartbeat,
    agent_key_reissue,
    agent_mark_offline,
    agent_update,
    heartbeat_for_key,
)
from agents.services.children import task_children_create
from agents.services.dispatch import (
    lease_seconds_or_default,
    task_claim,
    task_complete,
    task_complete_batch,
    task_extend,
    task_fail,
    task_reap_expired,
)
from agents.services.events import task_event_append, task_event_purge
from agents.services.limits import concurrency_limit_create, concurrency_limit_delete, concurrency_limit_update
from agents.services.notify import NOTIFY_CHANNEL, task_notify, tasks_notify
from agents.services.orchestras import (
    orchestra_add_agents,
    orchestra_create,
    orchestra_delete,
    orchestra_remove_agents,
    orchestra_transition,
    orchestra_update,
)
from agents.services.parking import task_park, task_resume
from agents.services.tasks import check_json_size, json_size, task_cancel, task_delete, task_retry, task_submit
from agents.services.usage import budget_check, budget_create, budget_delete, budget_update, usage_record

__all__ = [
    "AGENT_KEY_SCOPES",
    "AGENT_UPDATABLE_FIELDS",
    "NOTIFY_CHANNEL",
    "_check_trust_change",
    "agent_create",
    "agent_delete",
    "agent_heartbeat",
    "agent_key_reissue",
    "agent_mark_offline",
    "agent_update",
    "budget_check",
    "budget_create",
    "budget_delete",
    "budget_update",
    "check_json_size",
    "concurrency_limit_create",
    "concurrency_limit_delete",
    "concurrency_limit_update",
    "heartbeat_for_key",
    "json_size",
    "lease_seconds_or_default",
    "orchestra_add_agents",
    "orchestra_create",
    "orchestra_delete",
    "orchestra_remove_agents",
    "orchestra_transition",
    "orchestra_update",
    "task_cancel",
    "task_children_create",
    "task_claim",
    "task_complete",
    "task_complete_batch",
    "task_delete",
    "task_event_append",
    "task_event_purge",
    "task_extend",
    "task_fail",
    "task_notify",
    "task_park",
    "task_reap_expired",
    "task_resume",
    "task_retry",
    "task_submit",
    "tasks_notify",
    "usage_record",
]
