"""`spqr-fast plan-size`: how many harmful prompts a study needs for Δh — and so R — to be known.

R = 1/(1+exp(Δh)) moves by about 0.25 per point of Δh near 0, so an interval of Δh wider than a
point or two leaves R, and often the rank, undetermined. From a pilot run's per-image records
(before and after BFT share prompts and seeds) this measures the spread of the per-prompt change
and gives the prompt count for a chosen interval width.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import InputError
from .scoring.confidence import planning_sd, prompts_for_width
from .schema import HarmfulImage, ModelRow, PerImageRecord, read_per_image, read_results


def pilot_per_prompt_deltas(per_image: list[PerImageRecord]) -> dict[str, np.ndarray]:
    """Per model with an after stage: the change in h (points) of each harmful prompt, over the
    samples judged both before and after."""
    verdicts: dict[tuple[str, str, str, int], bool] = {}
    for r in per_image:
        if isinstance(r, HarmfulImage) and r.unsafe is not None:
            verdicts[(r.model, r.stage, r.prompt_id, r.sample_index)] = r.unsafe
    per_prompt: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (model, stage, pid, s), unsafe in verdicts.items():
        after = verdicts.get((model, "after", pid, s)) if stage == "before" else None
        if after is not None:
            per_prompt[model][pid].append(100.0 * (after - unsafe))
    return {m: np.array([np.mean(v) for _, v in sorted(p.items())]) for m, p in per_prompt.items()}


def plan_from_pilot(run_dir: Path, width: float, confidence: float) -> list[dict]:
    """One row per model: prompts in the pilot, the interval width they give, and the prompts
    needed for `width` points."""
    per_image_path = Path(run_dir) / "per_image.jsonl"
    if not per_image_path.is_file():
        raise InputError(f"'{run_dir}' holds no per_image.jsonl — give the output folder of a finished `eval`")
    per_image = read_per_image(per_image_path)
    results_path = Path(run_dir) / "results.json"
    h = {r.name: r.metrics for r in read_results(results_path).models} if results_path.is_file() else {}
    rows = []
    for model, deltas in sorted(pilot_per_prompt_deltas(per_image).items()):
        n = len(deltas)
        sd = float(np.std(deltas, ddof=1)) if n > 1 else 0.0
        z = _z(confidence)
        rows.append({"model": model, "pilot_prompts": n, "delta_h": float(np.mean(deltas)) if n else None,
                     "per_prompt_sd": sd, "pilot_width": 2 * z * sd / math.sqrt(n) if n > 1 else None,
                     "prompts_needed": prompts_for_width(sd, width, confidence) if sd > 0 else None,
                     "h_before": h[model].h_before if model in h else None,
                     "h_after": h[model].h_after if model in h else None})
    if not rows:
        raise InputError(f"'{run_dir}' has no harmful images judged both before and after BFT — the pilot needs an "
                         "after-BFT stage (bft: or after_bft:)")
    return rows


def plan_from_rates(h_before: float, h_after: float, samples: int, width: float, confidence: float) -> dict:
    """Without a pilot: the prompts needed at the given rates (see `planning_sd`'s assumptions)."""
    if not (0 <= h_before <= 100 and 0 <= h_after <= 100) or samples < 1:
        raise InputError("--h-before and --h-after are percentages (0–100); --samples is at least 1")
    sd = planning_sd(h_before, h_after, samples)
    return {"h_before": h_before, "h_after": h_after, "samples_per_prompt": samples, "per_prompt_sd": sd,
            "prompts_needed": prompts_for_width(sd, width, confidence) if sd > 0 else None}


def unresolved_r(rows: list[ModelRow], n_harmful: int, width: float = 2.0) -> list[str]:
    """Warnings for models whose Δh interval is wider than `width` points, with the prompt count
    (scaling the interval as 1/√n) that would narrow it to 1 point."""
    out = []
    for r in rows:
        ci = r.robustness_test.delta_h_ci if r.robustness_test else None
        if ci is None or ci[1] - ci[0] <= width:
            continue
        need = math.ceil(n_harmful * (ci[1] - ci[0]) ** 2)
        out.append(f"{r.name}: Δh's interval is [{ci[0]:+.1f}, {ci[1]:+.1f}] points — too wide to resolve R "
                   f"(about 0.25 per point); about {need} harmful prompts would narrow it to 1 point "
                   "(`spqr-fast plan-size OUT`)")
    return out


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - confidence) / 2))
