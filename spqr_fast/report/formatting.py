"""Formatting shared by the terminal table, the CSV and the HTML report."""

from __future__ import annotations

from ..schema import ModelRow, Results

DEMO_NOTICE = ("These are the miniature world's models: 32-pixel shape scenes, trained tiny networks whose "
               "forbidden concept is a shape. The numbers are known-answer checks of the evaluator; they say "
               "nothing about any real model's safety.")


def fmt(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def rank_cell(r: ModelRow) -> str:
    """'2' or, when the bootstrap leaves it open, '2 (1–3)'."""
    if r.rank is None:
        return ""
    span = r.rank_interval
    return str(r.rank) if not span or span[0] == span[1] else f"{r.rank} ({span[0]}–{span[1]})"


def tied_caption(rows: list[ModelRow]) -> str | None:
    from ..scoring.leaderboard import tied_within_noise

    groups = tied_within_noise([r for r in rows if r.rank is not None])
    return "; ".join(f"tied within noise: {', '.join(g)}" for g in groups) or None


def undefined_reasons(rows: list[ModelRow]) -> list[str]:
    """Why an axis shows '—' (the spec asks for the reason, never an invented number)."""
    out = []
    ranked = [r for r in rows if r.role != "base"]
    if ranked and all(r.Q is None for r in ranked) and any(r.metrics.fid is not None for r in ranked):
        out.append("Q (and SPQR) undefined: Q is relative to the cohort — give at least two aligned models, or "
                   "scoring.fid_bounds")
    if any(r.R is None for r in ranked):
        out.append("R undefined where a model has no after-BFT stage (bft: or after_bft:)")
    return out


def fid_label(results_or_features: Results | str | None) -> str:
    """'FID' only for the standard Inception weights; a distance over other features is named
    for what it is."""
    kind = results_or_features.fid_features if isinstance(results_or_features, Results) else results_or_features
    return "FID" if kind in (None, "inception") else f"FD ({kind})"
