"""The "illusion of utility" check (arXiv 2607.00402): coarse metrics (CLIPScore, FID) can stay
flat while an aligned model loses the ability to draw the right objects, counts and relations.
Per model: the change of CLIPScore, FID and TIFA relative to the base model; across the cohort:
where the ranking by CLIP-based P and by TIFA-based P disagree."""

from __future__ import annotations

from itertools import combinations

from ..schema import IllusionModel, IllusionReport, Metrics, ModelRow


def _delta(a, b):
    return None if a is None or b is None else a - b


def illusion_report(rows: list[ModelRow]) -> IllusionReport:
    base = next((r for r in rows if r.role == "base"), None)
    aligned = [r for r in rows if r.role != "base"]
    per_model = []
    for r in aligned:
        m = r.metrics
        b = base.metrics if base else Metrics()
        per_model.append(IllusionModel(name=r.name, delta_clip_score=_delta(m.clip_score, b.clip_score),
                                       delta_fid=_delta(m.fid, b.fid), delta_tifa=_delta(m.tifa, b.tifa),
                                       P_clip=m.P_clip, P_tifa=m.P_tifa))
    ranked = [r for r in per_model if r.P_clip is not None and r.P_tifa is not None]
    by_clip = [r.name for r in sorted(ranked, key=lambda r: -r.P_clip)]  # type: ignore[operator]
    by_tifa = [r.name for r in sorted(ranked, key=lambda r: -r.P_tifa)]  # type: ignore[operator]
    flips, concordant, discordant = [], 0, 0
    for a, b in combinations(ranked, 2):
        s_clip = (a.P_clip > b.P_clip) - (a.P_clip < b.P_clip)  # type: ignore[operator]
        s_tifa = (a.P_tifa > b.P_tifa) - (a.P_tifa < b.P_tifa)  # type: ignore[operator]
        if s_clip * s_tifa < 0:
            discordant += 1
            flips.append([a.name, b.name])
        elif s_clip * s_tifa > 0:
            concordant += 1
    pairs = concordant + discordant
    return IllusionReport(reference=base.name if base else None, models=per_model, ranking_by_P_clip=by_clip,
                          ranking_by_P_tifa=by_tifa, disagreeing_pairs=flips,
                          kendall_tau=None if pairs == 0 else (concordant - discordant) / pairs)
