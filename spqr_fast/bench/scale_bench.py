"""`spqr-fast bench --suite scale`: the evaluator's own work — everything it does around the
networks — at growing sizes, with no network run.

A synthetic cohort in the paper's proportions (3 models, each before and after fine-tuning;
500 harmful to 424 utility prompts; half as many reference images as images) is planned, its
images are stored (small stand-in pictures), reference images hashed, one record per image and
judge written (a safety verdict, a CLIPScore, a 2048-d feature vector as Inception gives), then the
real measure, score (paired bootstrap, one Fréchet distance per model and replicate) and report
steps run over those stores, and finally a cached re-run of all of it. Each phase is timed, with
the resident memory after it; the per-image overhead is the phases' sum over the images.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

FEATURE_DIM = 2048  # Inception's pool features, what FID uses
MODELS = (("base", "base"), ("aligned-1", "aligned"), ("aligned-2", "aligned"))
HARMFUL_SHARE = 500 / (2 * 500 + 424)  # per model: harmful before + after, utility before


def _rss_gib() -> float:
    from ..runtime import memory_snapshot

    return memory_snapshot().get("rss_gib", 0.0)


def _peak_gib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 3)


def _config(samples_per_model: int):
    """A config naming the cohort and its judges; no file it names is read (the bench builds
    the stores itself)."""
    from ..config import EvalConfig

    return EvalConfig.model_validate({
        "name": "scale-bench", "models": [{"name": n, "role": r, "model": {"path": n}} for n, r in MODELS],
        "prompts": {"harmful": {"path": "harmful.txt"}, "utility": {"path": "utility.txt"}, "reference_images": "refs"},
        "generation": {"steps": 1, "height": 32, "width": 32},
        "judges": {"nudenet": None, "concept_detector": {"path": "detector.onnx", "concept": "x"},
                   "clip": {"path": "clip"}, "inception": {"onnx": "features.onnx"}},
        "report": {"samples_per_model": samples_per_model}})


def _prompt_sets(images: int):
    from ..prompts import Prompt

    per_model = images / len(MODELS)
    harmful = max(2, round(per_model * HARMFUL_SHARE))
    utility = max(2, round(per_model - 2 * harmful))
    return {"harmful": [Prompt(f"h{i}", f"harmful prompt number {i}", ("nudity",) if i % 3 else ("violence",))
                        for i in range(harmful)],
            "utility": [Prompt(f"u{i}", f"a photo of object {i} on a table") for i in range(utility)]}


def _stages():
    from ..keys import stable_hash
    from ..plan import Stage

    return [Stage(name, stage, stable_hash([name, stage], 32)) for name, _ in MODELS for stage in ("before", "after")]


_EVAL_PHASES = ("plan", "store images", "hash references", "write records", "measure", "score", "report")


class _Phases:
    """Times each phase and the resident memory after it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.rss_gib: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        value = fn()
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        self.rss_gib[name] = _rss_gib()
        return value


def _one_size(images: int, root: Path, *, n_boot: int, n_boot_fid: int, compare_blas: bool) -> dict:
    from ..judges.records import ClipRecord, DetectorRecord, dump_record
    from ..judging import JudgedStores, reference_keys, store_name
    from ..keys import MEMO, FileHasher
    from ..measure import measure_cohort
    from ..plan import plan_cohort, sampler_settings
    from ..report.writers import write_outputs
    from ..runtime import blas_threads
    from ..schema import SCHEMA_VERSION, RankConfidence, Results
    from ..scoring.leaderboard import ScoringParams, score_cohort
    from ..scoring.memo import memoised_score
    from ..store import ImageStore, RecordStore, encode_png

    out = root / f"n{images}"
    cfg = _config(samples_per_model=8)
    sets = _prompt_sets(images)
    rng = np.random.default_rng(0)
    refs = out.parent / f"refs-{images}"
    refs.mkdir(parents=True, exist_ok=True)
    n_refs = max(2, images // 2)  # the measured runs: 1,250 reference images for 2,772 images
    picture = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for i in range(n_refs):  # reference images exist before the run: not timed
        (refs / f"{i:06d}.png").write_bytes(encode_png(np.roll(picture, i, axis=0)))
    ref_paths = sorted(refs.iterdir())
    phases = _Phases()
    params = ScoringParams(n_boot=n_boot, n_boot_fid=n_boot_fid)

    def plan():  # as the pipeline's plan step does (no VQA judge: utility images before BFT only)
        return plan_cohort(_stages(), sets, tifa_after=False, run_seed=0, samples_per_prompt=1,
                           sampler_settings=sampler_settings(cfg.generation, cfg.backend.kind, "cpu"))

    items = phases.run("plan", plan)
    images_store = ImageStore(out)

    def store_images():
        for i, it in enumerate(items):
            images_store.put(it.key, np.roll(picture, i, axis=1), {"model": it.model, "prompt_id": it.prompt.id})

    phases.run("store images", store_images)
    hasher = FileHasher.for_folder(out)
    ref_keys = phases.run("hash references", lambda: reference_keys(ref_paths, hasher))
    identities = {"concept_detector": {"judge": "concept_detector", "bench": True},
                  "clip": {"judge": "clip", "bench": True}, "inception": {"judge": "onnx_features", "bench": True}}
    stores = {name: RecordStore(out, store_name(name, ident)) for name, ident in identities.items()}
    judged = JudgedStores(stores, identities, sorted(ref_keys))

    def write_records():
        for it in items:
            if it.prompt_set == "harmful":
                p = float(rng.random())
                stores["concept_detector"].put_json(it.key, dump_record(DetectorRecord(
                    unsafe=p < (0.6 if it.model == "base" else 0.1), class_scores={"x": p}, detections=[])))
            elif it.stage == "before":
                stores["clip"].put_json(it.key, dump_record(ClipRecord(clip_score=float(0.25 + 0.05 * rng.random()))))
                stores["inception"].put_array(it.key, rng.standard_normal(FEATURE_DIM).astype(np.float32))
        for key in ref_keys:
            stores["inception"].put_array(key, rng.standard_normal(FEATURE_DIM).astype(np.float32))

    phases.run("write records", write_records)
    measured = phases.run("measure", lambda: measure_cohort(cfg, items, sets, judged))

    def score():
        with blas_threads(1):
            return memoised_score(measured.models, measured.reference_features, params, out / ".cache" / "scores")[0]

    rows = phases.run("score", score)
    blas_default = None
    if compare_blas:  # the same scoring with the BLAS left at its own thread count
        t0 = time.perf_counter()
        score_cohort(measured.models, measured.reference_features, params)
        blas_default = round(time.perf_counter() - t0, 3)
    results = Results(schema_version=SCHEMA_VERSION, name=cfg.name, demo=False, models=rows,
                      fid_features="bench features", rank_confidence=RankConfidence(
                          confidence=params.confidence, tied_within_noise=[], robustness="paper"),
                      resolution_warnings=[], backend_fallbacks=[], provenance={"scoring": {"epsilon": params.epsilon}})
    phases.run("report", lambda: write_outputs(results, measured.per_image, images_store, cfg, out))

    def cached_rerun():
        again = FileHasher.for_folder(out)
        replanned = plan()
        left = [it for it in replanned if not images_store.has(it.key)]
        keys = reference_keys(ref_paths, again)
        reopened = replace(judged, reference_keys=sorted(keys))
        unjudged = [it for it in replanned if it.prompt_set == "harmful" and not stores["concept_detector"].has(it.key)]
        remeasured = measure_cohort(cfg, replanned, sets, reopened)
        with blas_threads(1):
            rescored, reused = memoised_score(remeasured.models, remeasured.reference_features, params,
                                              out / ".cache" / "scores")
        write_outputs(results.model_copy(update={"models": rescored}), remeasured.per_image, images_store, cfg, out)
        assert not left and not unjudged and reused and again.appended_bytes == 0, "the cached re-run found work to do"

    phases.run("cached re-run", cached_rerun)
    history = _history_phases(phases, out, n_boot)
    work = sum(v for k, v in phases.seconds.items() if k in _EVAL_PHASES)
    return {"images": len(items), "reference_images": n_refs, "harmful_prompts": len(sets["harmful"]),
            "utility_prompts": len(sets["utility"]), "seconds": phases.seconds, "rss_gib": phases.rss_gib,
            "peak_rss_gib": _peak_gib(), "ms_per_image": round(1000 * work / len(items), 3),
            "score_seconds_blas_default": blas_default, "memo_bytes": (out / MEMO).stat().st_size,
            "per_image_jsonl_bytes": (out / "per_image.jsonl").stat().st_size,
            "report_html_bytes": (out / "report.html").stat().st_size,
            "files": sum(1 for _ in out.rglob("*") if _.is_file()), **history}


def _history_phases(phases: _Phases, out: Path, n_boot: int) -> dict:
    """What a nightly job adds at this size: the run recorded in a SQLite history (one row per
    image verdict), read back, and compared with itself image by image (paired bootstrap)."""
    from ..compare.comparison import compare_runs
    from ..compare.rules import DEFAULT_RULES, parse_rules
    from ..history.database import open_history
    from ..history.records import load_run, record_run

    db = open_history(f"sqlite:///{out / 'history.sqlite'}")
    try:
        run_id, _ = phases.run("record in history", lambda: record_run(db, out))
        snapshot = phases.run("read back from history", lambda: load_run(db, run_id))
    finally:
        db.close()
    comparison = phases.run("compare with itself", lambda: compare_runs(snapshot, snapshot, parse_rules(DEFAULT_RULES),
                                                                        n_boot=n_boot))
    assert not any(m.verdict == "regressed" for m in comparison.models), "a run compared with itself regressed"
    return {"history_bytes": (out / "history.sqlite").stat().st_size, "history_image_rows": len(snapshot.facts)}


def run_scale_bench(sizes: list[int], work_dir: Path, *, n_boot: int = 1000, n_boot_fid: int = 100,
                    compare_blas: bool = False, console=None) -> dict:
    """One row per size (ascending), each in its own folder under `work_dir`."""
    rows = []
    for n in sorted(sizes):
        if console is not None:
            console.print(f"scale bench: {n} images")
        rows.append(_one_size(n, Path(work_dir), n_boot=n_boot, n_boot_fid=n_boot_fid, compare_blas=compare_blas))
    return {"feature_dim": FEATURE_DIM, "models": len(MODELS), "n_boot": n_boot, "n_boot_fid": n_boot_fid,
            "rows": rows}
