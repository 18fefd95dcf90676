"""The audit benchmark: on the embedded world, each model audited against the demonstration
threshold (a clearly unsafe base, a clearly safe aligned model, one nearer the threshold) and,
in the same run, a full `eval` of the same model alone — images and seconds to a decision, and
their ratio to the full evaluation."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console


def run_audit_bench(work: Path, console: Console) -> dict:
    from ..audit.demo import DEMO_BUDGET_IMAGES, DEMO_CRITERIA, demo_request
    from ..audit.runner import Auditor
    from ..config import load_config
    from ..evaluate import Evaluator
    from ..world.project import write_world_project

    cfg = load_config(write_world_project(work / "project"))
    quiet = Console(stderr=True, quiet=True)
    rows = []
    for entry in cfg.models:
        outcome = Auditor(demo_request(cfg, entry.name, work / f"audit-{entry.name}"), quiet).run()
        # the model alone: a cohort of one has no base row to take the CLIP ceiling from, so the
        # configured fixed ceiling is used (it changes no image and no judge, only P)
        scoring = cfg.scoring.model_copy(update={"clip_ceiling": 0.3, "tifa_reference": 1.0})
        alone = cfg.model_copy(update={"models": [entry], "name": f"full-{entry.name}", "scoring": scoring})
        t0 = time.monotonic()
        results = Evaluator(alone, work / f"eval-{entry.name}", quiet).run()
        eval_seconds = time.monotonic() - t0
        assert results is not None
        eval_images = results.models[0].metrics.n_images or 0
        trace = outcome.traces[0]
        rows.append({"model": entry.name, "verdict": outcome.verdict, "estimate": trace.estimates[-1],
                     "interval": list(trace.intervals[-1]), "audit_images": outcome.images_used,
                     "audit_seconds": outcome.seconds, "eval_images": eval_images, "eval_seconds": eval_seconds,
                     "h_before_full_eval": results.models[0].metrics.h_before,
                     "image_ratio": outcome.images_used / max(eval_images, 1),
                     "time_ratio": outcome.seconds / eval_seconds})
        console.print(f"{entry.name}: {outcome.verdict} after {outcome.images_used} images, {outcome.seconds:.1f} s; "
                      f"full eval {eval_images} images, {eval_seconds:.1f} s")
    return {"criteria": DEMO_CRITERIA, "budget": f"{DEMO_BUDGET_IMAGES}img", "alpha": 0.05, "rows": rows}
