"""A comparison shown: the terminal summary (provenance changes first), JUnit XML and an HTML page."""

from __future__ import annotations

import html
from pathlib import Path

from rich.console import Console

from ..report.junit import JUnitCase, write_junit
from ..safe_text import shown
from .changes import HIGHER_IS_BETTER
from .comparison import Comparison

SHOWN = ("SPQR", "S", "P", "Q", "R", "h_before", "h_after", "tifa", "clip_score", "fid")
_COLOURS = {"regressed": "red", "improved": "green", "unchanged within noise": "default"}


def _num(value: float | None, quantity: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if quantity in ("h_before", "h_after", "delta_h", "fid") else f"{value:.3f}"


def _value(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def print_comparison(cmp: Comparison, console: Console) -> None:
    console.print(f"compare {shown(cmp.old)} → {shown(cmp.new)}  (intervals at {cmp.confidence:.0%})")
    if cmp.provenance:
        console.print(f"[bold]what changed between the runs[/] ({len(cmp.provenance)}):")
        for c in cmp.provenance[:25]:
            console.print(f"  {shown(c.section)}: {shown(c.key)}: {shown(_value(c.old))} → {shown(_value(c.new))}")
        if len(cmp.provenance) > 25:
            console.print(f"  … {len(cmp.provenance) - 25} more (--json lists all)")
    else:
        console.print("what changed between the runs: nothing in provenance (same models, judges, thresholds, "
                      "scoring, prompts, seeds, backend and software)")
    for m in cmp.models:
        colour = _COLOURS[m.verdict]
        console.print(f"[bold]{shown(m.name)}[/]: [{colour}]{m.verdict}[/]"
                      + "".join(f"; {shown(rule)} {outcome}" for rule, outcome in m.rule_outcomes.items()
                                if outcome in ("regressed", "improved")))
        for q in SHOWN:
            c = m.changes[q]
            if c.old is None and c.new is None:
                continue
            ci = "" if c.interval is None else f" [{_num(c.interval[0], q)}, {_num(c.interval[1], q)}]"
            flips = ""
            moved = c.flips is not None and (c.flips.safe_to_unsafe or c.flips.unsafe_to_safe)
            if moved and q in ("h_before", "h_after"):
                flips = (f"; flips {c.flips.safe_to_unsafe} safe→unsafe, {c.flips.unsafe_to_safe} unsafe→safe, "
                         f"McNemar p={c.flips.mcnemar_p:.3g}")
            change = "—" if c.change is None else f"{'+' if c.change >= 0 else ''}{_num(c.change, q)}"
            console.print(f"  {q:<10} {_num(c.old, q):>7} → {_num(c.new, q):<7} Δ {change}{ci}{flips}")
        for note in m.pairing.notes:
            console.print(f"  [yellow]note[/]: {shown(note)}")
    for name in cmp.only_in_old:
        console.print(f"[yellow]{shown(name)}[/]: only in {shown(cmp.old)}")
    for name in cmp.only_in_new:
        console.print(f"[yellow]{shown(name)}[/]: only in {shown(cmp.new)}")


def junit_cases(cmp: Comparison) -> list[JUnitCase]:
    cases = []
    for m in cmp.models:
        for rule, outcome in m.rule_outcomes.items():
            c = m.changes[rule.split(":")[0]]
            detail = (f"{c.quantity} {c.old} → {c.new} (change {c.change}, interval {c.interval}, {c.method})")
            cases.append(JUnitCase(classname=f"compare.{m.name}", name=rule,
                                   failure=f"regressed: {detail}" if outcome == "regressed" else None))
    return cases


def write_comparison_junit(cmp: Comparison, path: Path) -> None:
    write_junit(path, f"spqr-fast compare {cmp.old} → {cmp.new}", junit_cases(cmp))


def comparison_html(cmp: Comparison) -> str:
    esc = html.escape
    prov = "".join(f"<tr><td>{esc(c.section)}</td><td>{esc(c.key)}</td><td>{esc(_value(c.old))}</td>"
                   f"<td>{esc(_value(c.new))}</td></tr>" for c in cmp.provenance) or \
        "<tr><td colspan=4>nothing changed in provenance</td></tr>"
    blocks = []
    for m in cmp.models:
        rows = []
        for q in SHOWN:
            c = m.changes[q]
            if c.old is None and c.new is None:
                continue
            ci = "—" if c.interval is None else f"[{_num(c.interval[0], q)}, {_num(c.interval[1], q)}]"
            worse = c.change is not None and (c.change < 0 if HIGHER_IS_BETTER[q] else c.change > 0)
            flips = "" if c.flips is None else (f"{c.flips.safe_to_unsafe}↑ {c.flips.unsafe_to_safe}↓, "
                                                f"p={c.flips.mcnemar_p:.3g}" if c.flips.mcnemar_p is not None else "")
            change = "—" if c.change is None else _num(c.change, q)
            rows.append(f"<tr><td>{q}</td><td>{_num(c.old, q)}</td><td>{_num(c.new, q)}</td>"
                        f"<td class='{'worse' if worse else ''}'>{change}</td><td>{ci}</td><td>{esc(c.method)}</td>"
                        f"<td>{flips}</td></tr>")
        notes = "".join(f"<p class=note>{esc(n)}</p>" for n in m.pairing.notes)
        blocks.append(f"<h2>{esc(m.name)}: <span class='{m.verdict.split()[0]}'>{esc(m.verdict)}</span></h2>{notes}"
                      "<table><tr><th>quantity</th><th>old</th><th>new</th><th>change</th><th>interval</th>"
                      "<th>method</th><th>verdict flips</th></tr>" + "".join(rows) + "</table>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>spqr-fast compare</title><style>"
        "body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em}.worse{color:#b00}.regressed{color:#b00}"
        ".improved{color:#070}.note{color:#850}</style></head><body>"
        f"<h1>{esc(cmp.old)} → {esc(cmp.new)}</h1><p>Intervals at {cmp.confidence:.0%}. Rules: "
        f"{esc(', '.join(str(r) for r in cmp.rules))}.</p>"
        "<h2>What changed between the runs</h2><table><tr><th>section</th><th>key</th><th>old</th><th>new</th></tr>"
        f"{prov}</table>{''.join(blocks)}</body></html>\n")
