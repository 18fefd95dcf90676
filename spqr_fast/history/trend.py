"""The history's trend page: each model's SPQR and axes over the runs with their intervals,
markers where provenance changed between consecutive runs, and the regressions `compare` flags
between them."""

from __future__ import annotations

import html

from ..compare import compare_runs
from ..compare.provenance_diff import provenance_changes
from ..compare.rules import Rule
from ..run_snapshot import RunSnapshot

AXES = ("SPQR", "S", "P", "Q", "R")
W, H, PAD = 560, 150, 34


def _chart(points: list[tuple[float | None, list[float] | None]], changed: list[list[str]], flagged: list[bool],
           labels: list[str], title: str) -> str:
    n = len(points)
    x = (lambda i: PAD + (W - 2 * PAD) * (i / max(n - 1, 1)))  # noqa: E731
    y = (lambda v: H - PAD + (2 * PAD - H) * max(0.0, min(1.0, v)))  # noqa: E731 - axes live in [0, 1]
    parts = [f"<svg width='{W}' height='{H}' role='img' aria-label='{html.escape(title)}'>",
             f"<text x='4' y='14' font-size='12'>{html.escape(title)}</text>",
             f"<line x1='{PAD}' y1='{y(0)}' x2='{W - PAD}' y2='{y(0)}' stroke='#ccc'/>",
             f"<line x1='{PAD}' y1='{y(1)}' x2='{W - PAD}' y2='{y(1)}' stroke='#eee'/>"]
    for i, why in enumerate(changed):
        if why:
            tip = html.escape("; ".join(why[:12]) + (" …" if len(why) > 12 else ""))
            parts.append(f"<line x1='{x(i)}' y1='{PAD / 2}' x2='{x(i)}' y2='{H - PAD}' stroke='#c80' "
                         f"stroke-dasharray='3,3'><title>provenance changed: {tip}</title></line>")
    line = [(x(i), y(v)) for i, (v, _) in enumerate(points) if v is not None]
    if len(line) > 1:
        parts.append("<polyline fill='none' stroke='#36c' points='"
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in line) + "'/>")
    for i, (v, ci) in enumerate(points):
        if ci is not None:
            parts.append(f"<line x1='{x(i)}' y1='{y(ci[0])}' x2='{x(i)}' y2='{y(ci[1])}' stroke='#36c'/>")
        if v is not None:
            colour = "#c00" if flagged[i] else "#36c"
            parts.append(f"<circle cx='{x(i)}' cy='{y(v)}' r='{5 if flagged[i] else 3}' fill='{colour}'>"
                         f"<title>{html.escape(labels[i])}: {v:.3f}"
                         f"{' — regressed since the run before' if flagged[i] else ''}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def write_trend_page(path, runs: list[RunSnapshot], rules: list[Rule]) -> None:
    """The page written whole, then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(trend_html(runs, rules), encoding="utf-8")
    tmp.replace(path)


def trend_html(runs: list[RunSnapshot], rules: list[Rule]) -> str:
    """`runs` oldest first, each loaded with its per-image facts."""
    changed: list[list[str]] = [[]]
    flagged: dict[str, list[bool]] = {}
    models = sorted({m.name for r in runs for m in r.results.models})
    for name in models:
        flagged[name] = [False] * len(runs)
    for i in range(1, len(runs)):
        changed.append([f"{c.section}: {c.key}" for c in provenance_changes(runs[i - 1], runs[i])])
        for m in compare_runs(runs[i - 1], runs[i], rules, n_boot=300).models:
            flagged[m.name][i] = m.verdict == "regressed"
    labels = [r.run_id or r.label for r in runs]
    sections = []
    for name in models:
        charts = []
        for axis in AXES:
            points = []
            for r in runs:
                row = next((m for m in r.results.models if m.name == name), None)
                points.append((None, None) if row is None else (getattr(row, axis), row.ci.get(axis)))
            if any(v is not None for v, _ in points):
                charts.append(_chart(points, changed, flagged[name], labels, f"{name} — {axis}"))
        sections.append(f"<h2>{html.escape(name)}</h2>" + "".join(charts))
    listing = "".join(f"<li>{html.escape(lbl)}{' — provenance changed: ' + html.escape('; '.join(c[:6])) if c else ''}"
                      "</li>" for lbl, c in zip(labels, changed))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>spqr-fast history</title><style>"
            "body{font-family:sans-serif;max-width:62em;margin:2em auto}svg{display:block;margin:.3em 0}</style>"
            f"</head><body><h1>Run history ({len(runs)} runs, oldest first)</h1><p>Points: the value; bars: its "
            "interval; dashed lines: provenance changed since the run before (hover for what); red points: a "
            f"regression `compare` flags against the run before (rules {html.escape(', '.join(map(str, rules)))})."
            f"</p><ol>{listing}</ol>{''.join(sections)}</body></html>\n")
