from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents and dispatch"

    def ready(self) -> None:
        from agents.health import agent_orchestra_health
        from agents.metrics import COLLECTOR
        from observability.registry import register_collector, register_health_check

        register_health_check("agent_orchestra", agent_orchestra_health)
        register_collector(COLLECTOR)
