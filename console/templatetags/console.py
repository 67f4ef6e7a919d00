"""Template tags the admin's pages load to show the console's panels (the apps' admin classes stay
unaware of this app: their templates ask for the panels)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.safestring import SafeString

from console import charts
from console.dashboard import dashboard_numbers
from console.timeline import agent_tasks, task_timeline

register = template.Library()


def dashboard_charts(numbers: dict[str, Any]) -> dict[str, SafeString] | None:
    series = numbers.get("throughput")
    if not series:
        return None
    return {
        "hour": charts.throughput_svg(series["hour"], label="tasks finished per 5 minutes", tick_format="%H:%M"),
        "day": charts.throughput_svg(series["day"], label="tasks finished per hour", tick_format="%H:00"),
    }


@register.simple_tag(takes_context=True)
def console_dashboard(context: template.Context) -> dict[str, Any]:
    numbers = dashboard_numbers(viewer=context["request"].user)
    return {"dash": numbers, "charts": dashboard_charts(numbers)}


@register.simple_tag(takes_context=True)
def console_task_timeline(context: template.Context, task: Any) -> dict[str, Any]:
    return task_timeline(task, viewer=context["request"].user)


@register.simple_tag
def console_agent_tasks(agent: Any) -> dict[str, Any]:
    return agent_tasks(agent)


@register.simple_tag
def console_agent_usage(agent: Any) -> list[dict[str, Any]]:
    from console.usage import agent_usage

    return agent_usage(agent)


@register.simple_tag(takes_context=True)
def console_workflow(context: template.Context, run: Any) -> dict[str, Any]:
    from accounts.access import projects_with
    from workflows import selectors

    steps = selectors.workflow_steps(run)
    svg = charts.dag_svg(steps, task_url=lambda pk: reverse("admin:agents_task_change", args=[pk]))
    can = run.project_id in projects_with(context["request"].user, "agent:execute")
    return {"svg": svg, "can_execute": can, "is_running": run.status == "running"}


@register.filter
def seconds(value: float | None) -> str:
    """A duration in seconds as ``4.2 s``, ``3 min 5 s`` or ``2 h 10 min``; ``—`` for None."""
    if value is None:
        return "—"
    value = max(0.0, float(value))
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    if value < 86400:
        return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"
    return f"{int(value // 86400)} d {int(value % 86400 // 3600)} h"


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


@register.filter
def may_submit(user: Any) -> bool:
    """Whether ``user`` holds ``agent:execute`` in some project (the Submit buttons)."""
    from console.submit import may_submit as allowed

    return allowed(user)


@register.filter(name="short")
def short_filter(value: Any, keep: int = 10) -> Any:
    """A long id or hash cut to ``keep`` characters, the whole on hover (``symphony.display.short``)."""
    from symphony.display import short

    return short(value, int(keep))
