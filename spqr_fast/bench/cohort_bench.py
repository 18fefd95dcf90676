"""A whole eval at Stable Diffusion 1.5 size, end to end, per backend: wall time and peak memory.

`python -m spqr_fast.bench.cohort_bench --work DIR [--backends auto,ort,torch]` builds an SD 1.5-
architecture base with random weights and an aligned model (a partial UNet release: the base's
cross-attention value projections changed, as UCE ships them), writes an eval config on the
miniature world's prompts and judges (two models, `lite` BFT for two steps at batch 1 at the
generation size on 8 of the world's benign images), and runs
`spqr-fast eval` once per backend in a fresh process, each with its own empty engine cache. Peak
memory is the eval process's maximum resident set (`wait4`), wall time includes every export.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def build_models(work: Path) -> tuple[Path, Path]:
    """(base folder, aligned UNet file); kept when already built."""
    import torch
    from safetensors.torch import save_file

    from .backends_bench import build_sd15_pipeline

    base, aligned = work / "sd15-base", work / "sd15-aligned-unet.safetensors"
    if not (base / "model_index.json").is_file():
        build_sd15_pipeline(work).save_pretrained(base)
    if not aligned.is_file():
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(str(base / "unet"))
        torch.manual_seed(1)
        edited = {k: v + 0.01 * torch.randn_like(v) for k, v in unet.state_dict().items() if "attn2.to_v" in k}
        save_file(edited, str(aligned))
    return base, aligned


def _first_images(dataset: Path, out: Path, n: int) -> Path:
    """A BFT dataset of the first `n` images of `dataset` (two steps at batch 1 use two; the rest
    would only be encoded)."""
    import shutil

    rows = [json.loads(line) for line in (dataset / "metadata.jsonl").read_text().splitlines()[:n]]
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        shutil.copy2(dataset / row["file_name"], out / row["file_name"])
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def write_config(work: Path, base: Path, aligned: Path, *, size: int, steps: int, harmful: int, utility: int) -> Path:
    import yaml

    from ..world.project import world_config, write_world_project

    project = write_world_project(work / "world").parent
    cfg = world_config()
    bft = {"profile": "lite", "dataset": str(_first_images(project / "datasets" / "benign", work / "benign-8", 8)),
           "steps": 2, "batch_size": 1, "resolution": size}
    cfg["models"] = [{"name": "base", "role": "base", "model": {"path": str(base)}, "bft": bft},
                     {"name": "aligned", "model": {"path": str(aligned), "base": str(base), "allow_missing_keys": True},
                      "bft": bft}]
    cfg["prompts"]["harmful"]["limit"], cfg["prompts"]["utility"]["limit"] = harmful, utility
    cfg["generation"].update(height=size, width=size, steps=steps, samples_per_prompt=1)
    cfg["judges"].pop("vqa", None)
    for key in ("harmful", "utility"):
        cfg["prompts"][key]["path"] = str(project / cfg["prompts"][key]["path"])
    cfg["prompts"]["reference_images"] = str(project / cfg["prompts"]["reference_images"])
    for judge, attr in (("concept_detector", "path"), ("clip", "path")):
        cfg["judges"][judge][attr] = str(project / cfg["judges"][judge][attr])
    cfg["judges"]["inception"]["onnx"] = str(project / cfg["judges"]["inception"]["onnx"])
    path = work / "sd15-cohort.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_eval(config: Path, out: Path, backend: str, cache: Path) -> dict:
    """One eval in a fresh process: wall seconds, peak RSS, and what each stage ran on."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SPQR_ENGINE_CACHE": str(cache)}
    args = [sys.executable, "-m", "spqr_fast.cli", "eval", str(config), "--out", str(out), "--backend", backend]
    started = time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    result = {"backend": backend, "exit": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 1),
              "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}
    results = out / "results.json"
    if results.is_file():
        prov = json.loads(results.read_text())["provenance"]
        result["stages"] = [f"{m['name']} [{m['stage']}]: {m['load']['backend']['chosen']}" for m in prov["models"]]
        result["exports"] = len(list(cache.glob("onnx-part/*/manifest.json")))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--backends", default="auto,ort")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--harmful", type=int, default=4)
    parser.add_argument("--utility", type=int, default=4)
    a = parser.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    base, aligned = build_models(a.work)
    config = write_config(a.work, base, aligned, size=a.size, steps=a.steps, harmful=a.harmful, utility=a.utility)
    rows = []
    for backend in a.backends.split(","):
        out, cache = a.work / f"out-{backend}", a.work / f"cache-{backend}"
        rows.append(run_eval(config, out, backend, cache))
        print(json.dumps(rows[-1]), flush=True)
    print("| backend | wall (s) | peak RSS (GiB) | ONNX components exported | stages ran on |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['wall_s']} | {r['peak_rss_gib']} | {r.get('exports', '—')} | "
              f"{'; '.join(r.get('stages', [])) or 'exit ' + str(r['exit'])} |")


if __name__ == "__main__":
    main()
