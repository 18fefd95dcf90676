"""The measure stage: stored per-image records → each model's measurements (harm counts per
prompt, the before/after verdict pairs, CLIPScores, features, TIFA accuracies) and the
per-image records of the result files. Pure: it reads the stores and computes nothing else."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import EvalConfig
from .judging import JudgedStores
from .plan import WorkItem, group_by_stage
from .prompts import Prompt
from .schema import HarmfulImage, PerImageRecord, TifaImage, UtilityImage, VqaSummary
from .scoring.leaderboard import HarmCounts, ModelMeasurements
from .scoring.verdicts import fuse_verdicts


@dataclass
class Measured:
    models: list[ModelMeasurements]
    per_image: list[PerImageRecord]
    vqa_summary: dict[str, VqaSummary]  # per model: TIFA by question category, soft score, yes-bias control
    reference_features: np.ndarray


def measure_cohort(cfg: EvalConfig, items: list[WorkItem], prompt_sets: dict[str, list[Prompt]],
                   judged: JudgedStores) -> Measured:
    """Every model's measurements and the per-image records, from the stored images' records."""
    on_error = cfg.judges.on_judge_error
    harm_ids = [p.id for p in prompt_sets["harmful"]]
    harm_index = {pid: i for i, pid in enumerate(harm_ids)}
    harm_categories = tuple(p.categories for p in prompt_sets["harmful"])
    util_index = {p.id: i for i, p in enumerate(prompt_sets["utility"])}
    by_stage = group_by_stage(items)
    per_image: list[PerImageRecord] = []
    vqa_summary: dict[str, VqaSummary] = {}

    def harm_counts(model: str, stage: str) -> tuple[HarmCounts, dict]:
        unsafe = np.zeros(len(harm_ids))
        known = np.zeros(len(harm_ids))
        unknown = 0
        verdicts: dict[tuple[str, int], bool] = {}  # (prompt, sample) → unsafe, for the paired test
        for it in by_stage[(model, stage)]:
            if it.prompt_set != "harmful":
                continue
            records = judged.safety(it.key)
            v = fuse_verdicts((r.unsafe for r in records.values()), on_error)
            per_image.append(HarmfulImage(
                model=model, stage=stage, prompt_set="harmful", prompt_id=it.prompt.id, prompt=it.prompt.text,
                sample_index=it.sample_index, seed=it.seed, image=it.key, unsafe=v,
                judges={n: r.model_dump(mode="json", exclude_unset=True, by_alias=True, exclude={"detections"})
                        for n, r in records.items()}))
            if v is None:
                unknown += 1
                continue
            verdicts[(it.prompt.id, it.sample_index)] = v
            i = harm_index[it.prompt.id]
            unsafe[i] += v
            known[i] += 1
        return HarmCounts(unsafe, known, unknown), verdicts

    measurements = []
    for entry in cfg.models:
        before, verdicts_b = harm_counts(entry.name, "before")
        has_after = (entry.name, "after") in by_stage
        after, verdicts_a = harm_counts(entry.name, "after") if has_after else (None, {})
        pairs = np.array([(verdicts_b[k], verdicts_a[k]) for k in sorted(verdicts_b) if k in verdicts_a],
                         dtype=bool).reshape(-1, 2) if has_after else None
        util = [it for it in by_stage[(entry.name, "before")] if it.prompt_set == "utility"]
        clip = np.array([judged.clip_score(it.key) for it in util])
        feats = np.stack([judged.features(it.key) for it in util]).astype(np.float64)
        for it, c in zip(util, clip):
            per_image.append(UtilityImage(model=entry.name, stage="before", prompt_set="utility", prompt_id=it.prompt.id,
                                          prompt=it.prompt.text, sample_index=it.sample_index, seed=it.seed,
                                          image=it.key, clip_score=float(c)))
        tifa = {}
        if judged.has_tifa:
            from .judges.questions import pooled_categories

            after_util = [it for it in by_stage[(entry.name, "after")] if it.prompt_set == "utility"]
            recs = [judged.tifa(it.key) for it in util]
            recs_after = [judged.tifa(it.key) for it in after_util]
            acc = lambda rs: np.array([np.nan if r.accuracy is None else r.accuracy for r in rs])  # noqa: E731
            counts = lambda rs: [r.model_dump() for r in rs if r.n]  # noqa: E731
            yes = [r.mismatched_yes_rate for r in recs if r.mismatched_yes_rate is not None]
            tifa = dict(tifa=acc(recs), tifa_after=acc(recs_after) if after_util else None,
                        tifa_after_prompt=np.array([util_index[it.prompt.id] for it in after_util]) if after_util else None)
            vqa_summary[entry.name] = VqaSummary(
                categories_before=pooled_categories(counts(recs)),
                categories_after=pooled_categories(counts(recs_after)) if after_util else None,
                soft_before=float(np.mean([r.soft for r in recs if r.n])) if any(r.n for r in recs) else None,
                yes_bias_mismatched_yes_rate=float(np.mean(yes)) if yes else None)
            for it, r in zip(util + after_util, recs + recs_after):
                per_image.append(TifaImage(model=entry.name, stage=it.stage, prompt_set="utility", judge="vqa",
                                           prompt_id=it.prompt.id, sample_index=it.sample_index, image=it.key,
                                           tifa_accuracy=r.accuracy, tifa_soft=r.soft))
        measurements.append(ModelMeasurements(
            name=entry.name, role=entry.role, harm_before=before, harm_after=after, clip=clip,
            util_prompt=np.array([util_index[it.prompt.id] for it in util]), features=feats,
            harm_categories=harm_categories, n_images=len(by_stage[(entry.name, "before")]) + len(by_stage[(entry.name, "after")]),
            harm_pairs=pairs, **tifa))
    reference = np.stack([judged.features(k) for k in judged.reference_keys]).astype(np.float64)
    return Measured(measurements, per_image, vqa_summary, reference)
