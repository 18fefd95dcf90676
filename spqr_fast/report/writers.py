"""Result files: results.json, leaderboard.csv, per_image.jsonl and report.html (html_report),
published as one set; and the terminal leaderboard."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich.table import Table

from ..safe_text import shown

from ..schema import ModelRow, PerImageRecord, Results
from ..store import publish_outputs

from .charts import AXES
from .formatting import DEMO_NOTICE, fmt, rank_cell, tied_caption, undefined_reasons

__all__ = ["DEMO_NOTICE", "leaderboard_csv", "leaderboard_table", "write_outputs"]


def leaderboard_table(rows: list[ModelRow], title: str = "SPQR leaderboard", wide: bool = False, fid: str = "FID") -> Table:
    """The terminal leaderboard: the axes, Δh and the rank (with its interval) by default, which
    fits 80 columns; `wide` adds the raw metrics (all of them are in the CSV and the report)."""
    from rich import box

    caption = "; ".join(filter(None, [tied_caption(rows), *undefined_reasons(rows)])) or None
    # names, titles and captions come from data (a run name, a CSV row): shown, never obeyed as markup
    table = Table(title=shown(title), caption=shown(caption) if caption else None, box=box.SIMPLE_HEAD,
                  pad_edge=False)
    with_tifa = wide and any(r.metrics.tifa is not None for r in rows)
    cols = ("rank", "model", *(("role",) if wide else ()), *AXES, "Δh",
            *(("h before", "h after", "CLIPScore", fid) if wide else ()))
    for col in cols + (("TIFA", "TIFA after", "P_tifa") if with_tifa else ()):
        table.add_column(col, justify="left" if col in ("model", "role") else "right",
                         overflow="fold" if col == "model" else "ellipsis")
    for r in rows:
        m = r.metrics
        cells = [rank_cell(r), shown(r.name if wide or r.role != "base" else f"{r.name} (base)"),
                 *((r.role,) if wide else ()), *(fmt(getattr(r, a)) for a in AXES), fmt(m.delta_h, 2)]
        if wide:
            cells += [fmt(m.h_before, 1), fmt(m.h_after, 1), fmt(m.clip_score, 4), fmt(m.fid, 2)]
        if with_tifa:
            cells += [fmt(m.tifa), fmt(m.tifa_after), fmt(m.P_tifa)]
        table.add_row(*cells)
    return table


def leaderboard_csv(rows: list[ModelRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "model", "role", *AXES, *(f"{a}_lo" for a in AXES), *(f"{a}_hi" for a in AXES),
                "h_before", "h_after", "delta_h", "clip_score", "fid", "n_images", "unknown_verdicts",
                "rank_lo", "rank_hi", "tied_with", "delta_h_lo", "delta_h_hi", "safe_to_unsafe", "unsafe_to_safe",
                "mcnemar_p", "R_paired"])
    for r in rows:
        m, t = r.metrics, r.robustness_test
        span = r.rank_interval or [None, None]
        dh_ci = (t.delta_h_ci if t else None) or [None, None]
        ci = {a: r.ci.get(a) or [None, None] for a in AXES}
        w.writerow([r.rank or "", r.name, r.role, *(getattr(r, a) for a in AXES),
                    *(ci[a][0] for a in AXES), *(ci[a][1] for a in AXES),
                    m.h_before, m.h_after, m.delta_h, m.clip_score, m.fid, m.n_images,
                    m.unknown_verdicts, span[0], span[1], " ".join(r.tied_with or []), dh_ci[0], dh_ci[1],
                    *((t.safe_to_unsafe, t.unsafe_to_safe, t.mcnemar_p, t.R_paired) if t else (None,) * 4)])
    return buf.getvalue()


def write_outputs(results: Results, per_image: list[PerImageRecord], images, cfg, out: Path) -> None:
    """The four result files, replaced as one set (see `publish_outputs`)."""
    from .html_report import render_html

    publish_outputs(out, {
        "results.json": json.dumps(results.dump(), indent=1, sort_keys=True, default=str).encode(),
        "leaderboard.csv": leaderboard_csv(results.models).encode(),
        "per_image.jsonl": "".join(json.dumps(r.dump(), sort_keys=True) + "\n" for r in per_image).encode(),
        "report.html": render_html(results, per_image, images, cfg).encode(),
    })
