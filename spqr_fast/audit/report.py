"""An audit's outputs: audit.json (everything needed to reproduce and check the decision), a
few terminal lines, JUnit XML (one test case per criterion) and an HTML page showing each
criterion's interval narrowing against the images used."""

from __future__ import annotations

import html
import json
from pathlib import Path

from rich.console import Console

from ..report.junit import JUnitCase, write_junit
from ..safe_text import shown
from .runner import AuditOutcome, AuditRequest, CriterionTrace

EXIT = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}
METHOD = ("anytime-valid confidence sequences: hedged betting capital for a bounded mean under sampling without "
          "replacement (Waudby-Smith & Ramdas, JRSS-B 2024), error split equally across criteria (Bonferroni)")


def audit_record(req: AuditRequest, outcome: AuditOutcome) -> dict:
    return {
        "verdict": outcome.verdict,
        "model": req.model,
        "after": {"lora": str(req.lora) if req.lora else None, "path": str(req.after) if req.after else None},
        "alpha": req.alpha,
        "method": METHOD,
        "budget": {"seconds": req.seconds, "images": req.images},
        "low_memory": req.low_memory,
        "used": {"seconds": round(outcome.seconds, 2), "images": outcome.images_used, "chunks": outcome.chunks,
                 "prompts": outcome.prompts_used},
        "full_plan_images": outcome.full_plan_images,
        "criteria": [_criterion(t, req.alpha / len(outcome.traces)) for t in outcome.traces],
        "more_prompts_to_decide": outcome.projection,
        "order": {"seed": req.order_seed, "prompts": outcome.order},
        "stages": outcome.stages,
        "provenance": outcome.provenance,
    }


def _criterion(t: CriterionTrace, alpha: float) -> dict:
    q = t.criterion.quantity
    return {"criterion": str(t.criterion), "quantity": q.name, "meaning": q.meaning, "op": t.criterion.op,
            "threshold": t.criterion.threshold, "decision": t.decision, "alpha": alpha,
            "estimate": t.estimates[-1] if t.estimates else None,
            "interval": list(t.intervals[-1]) if t.intervals else None, "prompts": t.prompts,
            "population": t.sequence.N,
            "trace": [{"images": n, "estimate": e, "interval": list(ci)}
                      for n, e, ci in zip(t.images_at, t.estimates, t.intervals)]}


def write_audit(out: Path, record: dict) -> Path:
    path = out / "audit.json"
    tmp = out / ".audit.json.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    page = out / "audit.html"
    tmp = out / ".audit.html.tmp"
    tmp.write_text(audit_html(record), encoding="utf-8")
    tmp.replace(page)
    return path


def print_summary(record: dict, console: Console) -> None:
    colour = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow"}[record["verdict"]]
    used = record["used"]
    console.print(f"[bold {colour}]{record['verdict']}[/] {shown(record['model'])}: {used['images']} images "
                  f"({used['images'] / max(record['full_plan_images'], 1):.0%} of the full plan's "
                  f"{record['full_plan_images']}), {used['seconds']:.0f} s, α = {record['alpha']}")
    for c in record["criteria"]:
        lo, hi = c["interval"] or (None, None)
        interval = "—" if lo is None else f"[{lo:.3g}, {hi:.3g}]"
        console.print(f"  {shown(c['criterion'])}: {c['decision']}, estimate {c['estimate']:.3g} {interval} "
                      f"after {c['prompts']} of {c['population']} prompts")
    for criterion, n in (record.get("more_prompts_to_decide") or {}).items():
        console.print(f"  {shown(criterion)}: " + ("the estimate sits on the threshold — more prompts will not decide "
                                                    "it" if n is None else f"about {n} prompts in all would decide it "
                                                    "at the current rate"))


def write_audit_junit(path: Path, record: dict) -> None:
    cases = []
    for c in record["criteria"]:
        detail = f"estimate {c['estimate']}, interval {c['interval']}, {c['prompts']} prompts"
        cases.append(JUnitCase(classname=f"audit.{record['model']}", name=c["criterion"],
                               failure=f"violated: {detail}" if c["decision"] == "fail" else None,
                               skipped=f"undecided within the budget: {detail}" if c["decision"] == "open" else None))
    write_junit(path, f"spqr-fast audit {record['model']}", cases)


def _chart(c: dict) -> str:
    trace = c["trace"]
    if not trace:
        return ""
    w, h, pad = 560, 180, 36
    values = [v for p in trace for v in p["interval"]] + [c["threshold"]]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    n_max = max(p["images"] for p in trace)
    x = (lambda n: pad + (w - 2 * pad) * n / n_max)  # noqa: E731
    y = (lambda v: h - pad - (h - 2 * pad) * (v - lo) / span)  # noqa: E731
    band = ([f"{x(p['images']):.1f},{y(p['interval'][1]):.1f}" for p in trace]
            + [f"{x(p['images']):.1f},{y(p['interval'][0]):.1f}" for p in reversed(trace)])
    estimate = " ".join(f"{x(p['images']):.1f},{y(p['estimate']):.1f}" for p in trace)
    stop = trace[-1]
    return (f"<svg width='{w}' height='{h}' role='img'><polygon points='{' '.join(band)}' fill='#9bd' "
            f"fill-opacity='.5'/><polyline points='{estimate}' fill='none' stroke='#246'/>"
            f"<line x1='{pad}' x2='{w - pad}' y1='{y(c['threshold']):.1f}' y2='{y(c['threshold']):.1f}' stroke='#c00' "
            f"stroke-dasharray='4,3'/><line x1='{x(stop['images']):.1f}' x2='{x(stop['images']):.1f}' y1='{pad / 2}' "
            f"y2='{h - pad}' stroke='#555'/><text x='{pad}' y='14' font-size='12'>{html.escape(c['criterion'])}: "
            f"{c['decision']} (threshold dashed, stop at {stop['images']} images)</text>"
            f"<text x='{pad}' y='{h - 8}' font-size='11'>images used →</text></svg>")


def audit_html(record: dict) -> str:
    used = record["used"]
    charts = "".join(_chart(c) for c in record["criteria"])
    return ("<!doctype html><html><head><meta charset='utf-8'><title>spqr-fast audit</title><style>"
            "body{font-family:sans-serif;max-width:62em;margin:2em auto}svg{display:block;margin:1em 0}</style>"
            f"</head><body><h1>{html.escape(record['verdict'])}: {html.escape(record['model'])}</h1>"
            f"<p>{used['images']} images of the full plan's {record['full_plan_images']}, {used['seconds']:.0f} s, "
            f"α = {record['alpha']}. {html.escape(record['method'])}.</p><p>Each band is a criterion's confidence "
            "sequence at each chunk: it holds the true mean at every step at once with probability ≥ 1 − α/k, so "
            f"stopping early keeps the error bound.</p>{charts}</body></html>\n")
