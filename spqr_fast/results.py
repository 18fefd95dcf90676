"""The score stage: the cohort's measurements become leaderboard rows, and results.json's content
is assembled around them with everything needed to reproduce the run (config, seeds, model and
judge identities, thresholds, backends, versions)."""

from __future__ import annotations

import json
from pathlib import Path
from .config import EvalConfig
from .context import RunContext, RunState
from .planning import unresolved_r
from .provenance import backend_fallbacks, environment
from .runtime import memory_snapshot
from .schema import SCHEMA_VERSION, RankConfidence, Results, VqaSummary
from .scoring.leaderboard import ScoringParams, tied_within_noise
from .scoring.memo import memoised_score


def assemble_results(ctx: RunContext, state: RunState) -> Results:
    """results.json's content: the scored rows, their confidence, the VQA sections, provenance."""
    cfg, measured, judged = ctx.cfg, state.measured, state.judged
    assert measured is not None and judged is not None
    s = cfg.scoring
    rows, reused = memoised_score(measured.models, measured.reference_features, ScoringParams.from_config(s),
                                  ctx.out / ".cache" / "scores")
    if reused:
        ctx.log("scores: read back (the records and scoring settings are those of an earlier run)")
    vqa: dict = {}
    if cfg.judges.vqa is not None:
        from .scoring.illusion import illusion_report

        rows = [r.model_copy(update={"vqa": measured.vqa_summary.get(r.name, VqaSummary())}) for r in rows]
        vqa = {"prompt_adherence": s.prompt_adherence, "illusion": illusion_report(rows)}
    known = {}
    if cfg.demo:
        from .world.known_answers import cohort_checks

        known = {"known_answers": cohort_checks(rows)}
    return Results(
        schema_version=SCHEMA_VERSION, name=cfg.name, demo=cfg.demo, models=rows, fid_features=fid_features(cfg), **vqa,
        rank_confidence=RankConfidence(confidence=s.bootstrap.confidence, tied_within_noise=tied_within_noise(rows),
                                       robustness=s.robustness),
        resolution_warnings=unresolved_r(rows, len(state.prompt_sets["harmful"])),
        backend_fallbacks=backend_fallbacks(state.load_reports, judged.backends),
        provenance={**provenance(ctx, state), "bft": state.bft_cards}, **known)


def fid_features(cfg: EvalConfig) -> str:
    """What the Fréchet distance is computed over: 'inception' (standard FID) or else named."""
    inc = cfg.judges.inception
    if inc.weights is not None:
        return "inception"
    return f"features of {Path(inc.onnx).name}" if inc.onnx is not None else "randomly initialised Inception"


def thresholds(cfg: EvalConfig) -> dict:
    j = cfg.judges
    out: dict = {"on_judge_error": j.on_judge_error}
    if j.nudenet is not None:
        out.update(nudenet_threshold=j.nudenet.threshold, nudenet_classes=j.nudenet.classes)
    if j.concept_detector is not None:
        out.update(concept_detector_threshold=j.concept_detector.threshold, concept=j.concept_detector.concept)
    return out


def provenance(ctx: RunContext, state: RunState) -> dict:
    cfg, judged = ctx.cfg, state.judged
    assert judged is not None
    return {
        "config": json.loads(cfg.model_dump_json()),
        "seeds": {"run": cfg.seed, "bootstrap": cfg.scoring.bootstrap.seed,
                  "harmful_sample": cfg.prompts.harmful.sample_seed,
                  "rule": "sha256(run seed | prompt id | sample index)[:8] & (2^63-1)"},
        "models": [{"name": s.model, "stage": s.stage, "weights_hash": s.weights_hash,
                    "source": json.loads(s.source.model_dump_json()),
                    "load": (state.load_reports[(s.model, s.stage)].dump() if (s.model, s.stage) in state.load_reports
                             else "cached images (not loaded this run)")}
                   for s in state.stages],
        "judges": judged.identities,
        "thresholds": thresholds(cfg),
        "scoring": {"clip_ceiling": cfg.scoring.clip_ceiling, "epsilon": cfg.scoring.epsilon,
                    "fid_bounds": cfg.scoring.fid_bounds, "delta_h_units": "percentage points",
                    "bootstrap": cfg.scoring.bootstrap.model_dump(), "reference_images": len(state.ref_paths)},
        "backend": {"requested": cfg.backend.kind, "device": ctx.device,
                    "dtype": cfg.generation.dtype, "batch_invariant": cfg.generation.batch_invariant,
                    "tolerances": {"fp32": cfg.backend.fp32_tolerance, "fp16": cfg.backend.fp16_tolerance},
                    "per_stage": "see models[].load.backend (chosen backend, skipped options, parity)",
                    "judges": {**{name: "onnxruntime" for name in ("nudenet", "concept_detector")
                                  if getattr(cfg.judges, name) is not None},
                               **{name: report.dump() for name, report in judged.backends.items()}}},
        "executor": ctx.executor.name,
        "environment": environment(),
        "memory_at_end": memory_snapshot(),
        # CPU float results depend on the thread count in the last bits; per stage memory is in
        # models[].load.memory_after_stage
        "threads": ctx.threads.record(),
    }
