"""The report's SVG charts, drawn by hand (no plotting library in the image): the four axes per
model and harmfulness before/after benign fine-tuning, each with its 95% interval drawn and
written out, labels large enough to read and a legend that fits."""

from __future__ import annotations

import html

from ..schema import ModelRow

AXES = ("S", "P", "Q", "R", "SPQR")
AXIS_COLOURS = {"S": "#4e79a7", "P": "#f28e2b", "Q": "#59a14f", "R": "#e15759", "SPQR": "#76b7b2"}
STAGE_COLOURS = {"before": "#9c9c9c", "after": "#c0392b"}
FONT = 'font-family="system-ui,sans-serif"'


def interval_words(ci: list[float] | None, digits: int = 2) -> str:
    return "" if not ci else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _bars_svg(groups: list[tuple[str, list[tuple[str, float | None, list[float] | None, str]]]], *,
              scale_max: float, ticks: list[float], tick_format: str, legend: list[tuple[str, str]],
              value_digits: int) -> str:
    """Grouped bars. `groups` = [(group label, [(series, value, interval, colour)])]."""
    bar, gap, group_gap, height, top, left = 24, 3, 36, 240, 16, 56
    per_group = max((len(series) for _, series in groups), default=1)
    group_w = per_group * (bar + gap) + group_gap
    legend_w = 24 + sum(24 + 9 * len(name) for name, _ in legend)
    width = max(left + group_w * len(groups) + 10, left + legend_w)
    total_h = top + height + 34 + 34
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}" '
             f'role="img" {FONT}>']
    for t in ticks:
        y = top + height * (1 - t / scale_max)
        parts.append(f'<line x1="{left - 6}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{left - 10}" y="{y + 5:.1f}" font-size="13" text-anchor="end">{tick_format.format(t)}</text>')
    for gi, (label, series) in enumerate(groups):
        x0 = left + 8 + gi * group_w
        for si, (name, value, ci, colour) in enumerate(series):
            x = x0 + si * (bar + gap)
            words = f"{html.escape(label)} {html.escape(name)} = {'—' if value is None else f'{value:.{value_digits}f}'}"
            if value is not None:
                h = height * max(0.0, min(1.0, value / scale_max))
                parts.append(f'<rect x="{x}" y="{top + height - h:.1f}" width="{bar}" height="{h:.1f}" fill="{colour}">'
                             f'<title>{words}{interval_words(ci, value_digits)} (95% interval)</title></rect>')
            else:
                parts.append(f'<text x="{x + bar / 2}" y="{top + height - 4}" font-size="12" text-anchor="middle">—'
                             f'<title>{words}: undefined</title></text>')
            if ci:
                y_lo = top + height * (1 - min(ci[0], scale_max) / scale_max)
                y_hi = top + height * (1 - min(ci[1], scale_max) / scale_max)
                cx = x + bar / 2
                parts.append(f'<line x1="{cx}" x2="{cx}" y1="{y_lo:.1f}" y2="{y_hi:.1f}" stroke="#222" stroke-width="1.5"/>'
                             f'<line x1="{cx - 5}" x2="{cx + 5}" y1="{y_lo:.1f}" y2="{y_lo:.1f}" stroke="#222"/>'
                             f'<line x1="{cx - 5}" x2="{cx + 5}" y1="{y_hi:.1f}" y2="{y_hi:.1f}" stroke="#222"/>')
        parts.append(f'<text x="{x0 + (len(series) * (bar + gap)) / 2}" y="{top + height + 22}" font-size="14" '
                     f'text-anchor="middle">{html.escape(label)}</text>')
    x = left
    for name, colour in legend:
        parts.append(f'<rect x="{x}" y="{top + height + 40}" width="14" height="14" fill="{colour}"/>'
                     f'<text x="{x + 19}" y="{top + height + 52}" font-size="14">{html.escape(name)}</text>')
        x += 24 + 9 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def axes_chart_svg(rows: list[ModelRow]) -> str:
    """S, P, Q, R and SPQR per model with their 95% bootstrap intervals."""
    groups = [(r.name, [(a, getattr(r, a), r.ci.get(a), AXIS_COLOURS[a]) for a in AXES]) for r in rows]
    return _bars_svg(groups, scale_max=1.0, ticks=[0, 0.25, 0.5, 0.75, 1.0], tick_format="{:.2f}",
                     legend=[(a, AXIS_COLOURS[a]) for a in AXES], value_digits=3)


def harm_before_interval(row: ModelRow) -> list[float] | None:
    """h before BFT's interval in percent, from S's (S = 1 − h/100). After BFT none is drawn:
    the paired interval of the change Δh is the one that matters, and it is in the tables."""
    s_ci = row.ci.get("S")
    return None if not s_ci else [100 * (1 - s_ci[1]), 100 * (1 - s_ci[0])]


def harm_chart_svg(rows: list[ModelRow]) -> str:
    """Harmfulness h (% unsafe) before and after benign fine-tuning, per model."""
    groups = []
    for r in rows:
        groups.append((r.name, [("h before BFT", r.metrics.h_before, harm_before_interval(r), STAGE_COLOURS["before"]),
                                ("h after BFT", r.metrics.h_after, None, STAGE_COLOURS["after"])]))
    top = max([100.0 * 0.25] + [v for _, s in groups for _, v, _, _ in s if v is not None])
    scale = min(100.0, 25.0 * -(-top // 25))
    ticks = [scale * i / 4 for i in range(5)]
    return _bars_svg(groups, scale_max=scale, ticks=ticks, tick_format="{:.0f}%",
                     legend=[("h before BFT", STAGE_COLOURS["before"]), ("h after BFT", STAGE_COLOURS["after"])],
                     value_digits=1)
