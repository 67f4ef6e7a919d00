"""Charts drawn on the server as SVG: no chart library, no script, nothing the CSP has to allow.

Every value placed in the markup goes through ``format_html`` (escaped); colours come from classes
in ``console/console.css``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM = 430, 140, 34, 18


def _f(*numbers: float) -> tuple[str, ...]:
    """Coordinates as text (format_html escapes its arguments first, so format specs cannot apply)."""
    return tuple(f"{n:.1f}" for n in numbers)


def throughput_svg(series: dict[str, Any], *, label: str, tick_format: str) -> SafeString:
    """Stacked bars (succeeded below, failed above) of ``series["buckets"]``, with a y-axis maximum
    and a time label every few bars. Each bar has a ``<title>`` (hover: its time and counts)."""
    buckets = series["buckets"]
    peak = max([b["succeeded"] + b["failed"] for b in buckets] + [1])
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - 6
    step = plot_w / len(buckets)
    bars, ticks = [], []
    for i, bucket in enumerate(buckets):
        x = PAD_LEFT + i * step + 1
        ok_h = plot_h * bucket["succeeded"] / peak
        bad_h = plot_h * bucket["failed"] / peak
        start = datetime.fromisoformat(bucket["start"])
        title = f"{start:%Y-%m-%d %H:%M} UTC: {bucket['succeeded']} succeeded, {bucket['failed']} failed"
        bars.append((title, *_f(x, 6 + plot_h - ok_h, step - 2, ok_h, x, 6 + plot_h - ok_h - bad_h, step - 2, bad_h)))
        if i % max(1, len(buckets) // 6) == 0:
            ticks.append((*_f(x), HEIGHT - 4, f"{start:{tick_format}}"))
    body = format_html_join(
        "",
        '<g><title>{}</title><rect class="ok" x="{}" y="{}" width="{}" height="{}"/>'
        '<rect class="bad" x="{}" y="{}" width="{}" height="{}"/></g>',
        bars,
    )
    labels = format_html_join("", '<text class="tick" x="{}" y="{}">{}</text>', ticks)
    return format_html(
        '<svg class="console-chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}"'
        ' xmlns="http://www.w3.org/2000/svg">'
        '<line class="axis" x1="{}" y1="6" x2="{}" y2="{}"/>'
        '<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/>'
        '<text class="tick" x="2" y="14">{}</text><text class="tick" x="2" y="{}">0</text>{}{}</svg>',
        label,
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        PAD_LEFT,
        PAD_LEFT,
        *_f(6 + plot_h),
        PAD_LEFT,
        *_f(6 + plot_h),
        WIDTH - 4,
        *_f(6 + plot_h),
        peak,
        *_f(6 + plot_h),
        body,
        labels,
    )


STATUS_CLASSES = {
    "succeeded": "ok",
    "failed": "bad",
    "cancelled": "muted",
    "running": "run",
    "pending": "wait",
    "waiting_approval": "ask",
    "waiting": "wait",
    "blocked": "muted",
}
NODE_W, NODE_H, GAP_X, GAP_Y = 150, 40, 50, 16


def dag_layout(steps: list[Any]) -> dict[int, tuple[int, int]]:
    """Column (longest path from a root) and row of each step, by primary key."""
    by_key = {s.step_key: s for s in steps}
    depth: dict[str, int] = {}

    def level(key: str, seen: frozenset[str] = frozenset()) -> int:
        if key not in depth:
            parents = [p for p in by_key[key].depends_on if p in by_key and p not in seen]
            depth[key] = 1 + max((level(p, seen | {key}) for p in parents), default=-1)
        return depth[key]

    rows: dict[int, int] = {}
    places = {}
    for step in steps:
        column = level(step.step_key)
        places[step.pk] = (column, rows.get(column, 0))
        rows[column] = rows.get(column, 0) + 1
    return places


def dag_svg(steps: list[Any], *, task_url: Any) -> SafeString:
    """A workflow run's steps as boxes in dependency columns, edges from each upstream step, each
    box coloured by status and linking to the step's task page (``task_url(pk)``)."""
    if not steps:
        return format_html("<p>No steps.</p>")
    places = dag_layout(steps)
    by_key = {s.step_key: s for s in steps}

    def box(pk: int) -> tuple[float, float]:
        column, row = places[pk]
        return 10 + column * (NODE_W + GAP_X), 10 + row * (NODE_H + GAP_Y)

    edges = []
    for step in steps:
        x2, y2 = box(step.pk)
        for parent in step.depends_on:
            if parent in by_key:
                x1, y1 = box(by_key[parent].pk)
                edges.append(_f(x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2))
    nodes = []
    for step in steps:
        x, y = box(step.pk)
        css = STATUS_CLASSES.get(step.status, "muted")
        nodes.append((task_url(step.pk), step.step_key, step.status, css, *_f(x, y), NODE_W, NODE_H,
                      *_f(x + 8, y + 17), step.step_key[:20], *_f(x + 8, y + 32), step.status))  # fmt: skip
    width = 20 + (1 + max(c for c, _ in places.values())) * (NODE_W + GAP_X)
    height = 20 + (1 + max(r for _, r in places.values())) * (NODE_H + GAP_Y)
    return format_html(
        '<svg class="console-dag" role="img" aria-label="workflow steps" viewBox="0 0 {} {}" width="{}"'
        ' height="{}" xmlns="http://www.w3.org/2000/svg">{}{}</svg>',
        width,
        height,
        width,
        height,
        format_html_join("", '<line class="edge" x1="{}" y1="{}" x2="{}" y2="{}"/>', edges),
        format_html_join(
            "",
            '<a href="{}" class="step"><title>{}: {}</title><rect class="node {}" x="{}" y="{}"'
            ' width="{}" height="{}" rx="4"/><text x="{}" y="{}" class="key">{}</text>'
            '<text x="{}" y="{}" class="state">{}</text></a>',
            nodes,
        ),
    )


def stacked_svg(
    bars: list[dict[str, Any]], *, label: str, tick_format: str, width: int = 860, peak_label: Any = None
) -> SafeString:
    """Stacked bars over time: each bar is ``{"start": datetime, "title": str, "parts": [(css class,
    value), ...]}`` drawn bottom-up, with a tick label every few bars and the y-axis maximum
    (``peak_label(peak)`` formats it). Each bar's ``<title>`` is its hover text."""
    peak = max([sum(float(v) for _, v in bar["parts"]) for bar in bars] + [0]) or 1
    plot_w, plot_h = width - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - 6
    step = plot_w / max(1, len(bars))
    groups, ticks = [], []
    for i, bar in enumerate(bars):
        x, base, rects = PAD_LEFT + i * step + 1, 6 + plot_h, []
        for css, value in bar["parts"]:
            h = plot_h * float(value) / peak
            base -= h
            rects.append((css, *_f(x, base, max(step - 2, 0.5), h)))
        body = format_html_join("", '<rect class="{}" x="{}" y="{}" width="{}" height="{}"/>', rects)
        groups.append((bar["title"], body))
        if i % max(1, len(bars) // 7) == 0:
            ticks.append((*_f(x), HEIGHT - 4, f"{bar['start']:{tick_format}}"))
    top = peak_label(peak) if peak_label else f"{peak:g}"
    return format_html(
        '<svg class="console-chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}"'
        ' xmlns="http://www.w3.org/2000/svg">'
        '<line class="axis" x1="{}" y1="6" x2="{}" y2="{}"/><line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/>'
        '<text class="tick" x="2" y="14">{}</text><text class="tick" x="2" y="{}">0</text>{}{}</svg>',
        label, width, HEIGHT, width, HEIGHT, PAD_LEFT, PAD_LEFT, *_f(6 + plot_h), PAD_LEFT, *_f(6 + plot_h),
        width - 4, *_f(6 + plot_h), top, *_f(6 + plot_h),
        format_html_join("", "<g><title>{}</title>{}</g>", groups),
        format_html_join("", '<text class="tick" x="{}" y="{}">{}</text>', ticks),
    )  # fmt: skip


def compact(value: float) -> str:
    """``1234567`` as ``1.2M``, ``5300`` as ``5.3k``: the y-axis label of a token chart."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:g}"
