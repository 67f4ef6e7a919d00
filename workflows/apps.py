from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "workflows"

    def ready(self) -> None:
        # Dispatch calls these inside the transaction of the completion, failure or claim (agents.hooks).
        from agents import hooks
        from workflows.services import approvals, transitions

        hooks.register_task_finished(transitions.on_task_finished)
        hooks.register_claim_enricher(transitions.add_upstream)
        hooks.register_periodic(approvals.approval_expire_due)
        from workflows.scheduling import admin as _schedule_admin  # noqa: F401 - registers the schedules' admin
