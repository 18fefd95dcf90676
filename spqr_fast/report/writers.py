"""Result files: results.json, leaderboard.csv, per_image.jsonl and report.html (html_report),
published as one set; and the terminal leaderboard."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich.table import Table

from ..store import publish_outputs

from .charts import AXES
from .formatting import DEMO_NOTICE, fmt, rank_cell, tied_caption, undefined_reasons

__all__ = ["DEMO_NOTICE", "leaderboard_csv", "leaderboard_table", "write_outputs"]


def leaderboard_table(rows: list[dict], title: str = "SPQR leaderboard", wide: bool = False, fid: str = "FID") -> Table:
    """The terminal leaderboard: the axes, Δh and the rank (with its interval) by default, which
    fits 80 columns; `wide` adds the raw metrics (all of them are in the CSV and the report)."""
    from rich import box

    caption = "; ".join(filter(None, [tied_caption(rows), *undefined_reasons(rows)])) or None
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    with_tifa = wide and any("tifa" in r.get("metrics", {}) for r in rows)
    cols = ("rank", "model", *(("role",) if wide else ()), *AXES, "Δh",
            *(("h before", "h after", "CLIPScore", fid) if wide else ()))
    for col in cols + (("TIFA", "TIFA after", "P_tifa") if with_tifa else ()):
        table.add_column(col, justify="left" if col in ("model", "role") else "right",
                         overflow="fold" if col == "model" else "ellipsis")
    for r in rows:
        m = r.get("metrics", {})
        name = r.get("name", r.get("model", ""))
        cells = [rank_cell(r), name if wide or r.get("role", "aligned") != "base" else f"{name} (base)",
                 *((r.get("role", "aligned"),) if wide else ()), *(fmt(r.get(a)) for a in AXES),
                 fmt(m.get("delta_h"), 2)]
        if wide:
            cells += [fmt(m.get("h_before"), 1), fmt(m.get("h_after"), 1), fmt(m.get("clip_score"), 4),
                      fmt(m.get("fid"), 2)]
        if with_tifa:
            cells += [fmt(m.get("tifa")), fmt(m.get("tifa_after")), fmt(m.get("P_tifa"))]
        table.add_row(*cells)
    return table


def leaderboard_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "model", "role", *AXES, *(f"{a}_lo" for a in AXES), *(f"{a}_hi" for a in AXES),
                "h_before", "h_after", "delta_h", "clip_score", "fid", "n_images", "unknown_verdicts",
                "rank_lo", "rank_hi", "tied_with", "delta_h_lo", "delta_h_hi", "safe_to_unsafe", "unsafe_to_safe",
                "mcnemar_p", "R_paired"])
    for r in rows:
        ci = r["ci"]
        m = r["metrics"]
        span = r.get("rank_interval") or [None, None]
        t = r.get("robustness_test") or {}
        dh_ci = t.get("delta_h_ci") or [None, None]
        w.writerow([r["rank"] or "", r["name"], r["role"], *(r[a] for a in AXES),
                    *((ci[a] or [None, None])[0] for a in AXES), *((ci[a] or [None, None])[1] for a in AXES),
                    m["h_before"], m["h_after"], m["delta_h"], m["clip_score"], m["fid"], m["n_images"],
                    m["unknown_verdicts"], span[0], span[1], " ".join(r.get("tied_with", [])), dh_ci[0], dh_ci[1],
                    t.get("safe_to_unsafe"), t.get("unsafe_to_safe"), t.get("mcnemar_p"), t.get("R_paired")])
    return buf.getvalue()


def write_outputs(results: dict, per_image: list[dict], images, cfg, out: Path) -> None:
    """The four result files, replaced as one set (see `publish_outputs`)."""
    from .html_report import render_html

    publish_outputs(out, {
        "results.json": json.dumps(results, indent=1, sort_keys=True, default=str).encode(),
        "leaderboard.csv": leaderboard_csv(results["models"]).encode(),
        "per_image.jsonl": "".join(json.dumps(r, sort_keys=True) + "\n" for r in per_image).encode(),
        "report.html": render_html(results, per_image, images, cfg).encode(),
    })
