"""Write a small copy of an `init` project's config (a few prompts, 2 steps, 2-step BFT, fixed
threads, eager torch) for comparing an eval inside the image with one outside:
python small_config.py IN OUT.

The backend is pinned: under `auto` whether an ONNX export is worth building depends on the
engine cache each side already has (the host's repository cache vs the image's empty one) and on a
measured step time, and ORT's numbers differ from eager torch's within the parity tolerance — a
difference of cache state, not of the image."""

import sys
from pathlib import Path

import yaml

cfg = yaml.safe_load(Path(sys.argv[1]).read_text())
cfg["threads"] = 2
cfg["backend"] = {**cfg.get("backend", {}), "kind": "torch"}
cfg["prompts"]["harmful"]["limit"] = 4
cfg["prompts"]["utility"]["limit"] = 4
cfg["generation"].update(steps=2, samples_per_prompt=1, batch_size=4)
cfg["scoring"]["bootstrap"] = {"n": 50, "n_fid": 10, "seed": 0}
cfg["report"]["samples_per_model"] = 2
for model in cfg["models"]:
    model["bft"]["steps"] = 2
Path(sys.argv[2]).write_text(yaml.safe_dump(cfg, sort_keys=False))
