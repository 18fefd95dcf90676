"""The world's evaluation inputs, generated from fixed seeds: prompt sets with categories, TIFA
question files built from scene graphs, FID reference images and fine-tuning datasets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .scenes import BENIGN_SHAPES, FORBIDDEN, SHAPES, Scene, caption, questions, render, sample_scene

UTILITY_SEED, HARMFUL_SEED, REFERENCE_SEED, BENIGN_BFT_SEED, UNSAFE_BFT_SEED = 100, 200, 300, 400, 500


def unique_scenes(n: int, seed: int, shapes: tuple[str, ...], require: str | None = None) -> list[Scene]:
    """n scenes with distinct captions."""
    rng = np.random.default_rng(seed)
    seen: dict[str, Scene] = {}
    while len(seen) < n:
        s = sample_scene(rng, shapes, require=require)
        seen.setdefault(caption(s), s)
    return list(seen.values())


def utility_scenes(n: int = 24) -> list[Scene]:
    return unique_scenes(n, UTILITY_SEED, BENIGN_SHAPES)


def harmful_scenes(n: int = 16) -> list[Scene]:
    return unique_scenes(n, HARMFUL_SEED, SHAPES, require=FORBIDDEN)


def harm_category(scene: Scene) -> str:
    """How a harmful prompt asks for the concept: alone, several copies, or beside another shape."""
    if scene.layout == "pair":
        return "composition"
    return "single" if len(scene.objects) == 1 else "multiple"


# The embedded default's harmful set, by category. Distinct captions run out at 12 "single" and
# 24 "multiple" prompts, so a set drawn unstratified is mostly "multiple" at 16 prompts and mostly
# "composition" at 160 — and UCE (which erases multiples) and ESD-x (which erases compositions)
# swap places overall. A fixed mix keeps every category's answer measurable.
HARMFUL_QUOTA = {"composition": 24, "multiple": 16, "single": 8}
# The file's order repeats this pattern, so that any prefix (`limit: n`) keeps the same mix.
_QUOTA_PATTERN = ("composition", "multiple", "composition", "single", "multiple", "composition")


def stratified_harmful_scenes(quota: dict[str, int] = HARMFUL_QUOTA) -> list[Scene]:
    """Distinct harmful scenes, `quota[c]` of each category, interleaved by `_QUOTA_PATTERN`."""
    rng = np.random.default_rng(HARMFUL_SEED)
    buckets: dict[str, dict[str, Scene]] = {c: {} for c in quota}
    for _ in range(100_000):
        if all(len(buckets[c]) >= k for c, k in quota.items()):
            break
        s = sample_scene(rng, SHAPES, require=FORBIDDEN)
        bucket = buckets[harm_category(s)]
        if len(bucket) < quota[harm_category(s)]:
            bucket.setdefault(caption(s), s)
    else:
        raise ValueError(f"cannot draw {quota} distinct harmful scenes")
    queues = {c: list(b.values()) for c, b in buckets.items()}
    out: list[Scene] = []
    while any(queues.values()):
        for c in _QUOTA_PATTERN:
            if queues.get(c):
                out.append(queues[c].pop(0))
    return out


def write_prompt_files(folder: Path, n_utility: int = 24) -> None:
    """harmful.csv (id, prompt, category), utility.txt and questions.json (TIFA schema)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "harmful.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "prompt", "category"])
        for i, s in enumerate(stratified_harmful_scenes()):
            w.writerow([f"h{i:02d}", caption(s), harm_category(s)])
    util = utility_scenes(n_utility)
    (folder / "utility.txt").write_text("".join(caption(s) + "\n" for s in util), encoding="utf-8")
    rows = [{"id": f"u{i:02d}", "caption": caption(s), **q} for i, s in enumerate(util) for q in questions(s)]
    (folder / "questions.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def write_images(folder: Path, scenes: list[Scene], metadata: bool) -> None:
    """PNG per scene; with `metadata`, a metadata.jsonl of (file_name, text) for fine-tuning."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, s in enumerate(scenes):
        name = f"scene_{i:04d}.png"
        Image.fromarray(render(s)).save(folder / name)
        lines.append(json.dumps({"file_name": name, "text": caption(s)}))
    if metadata:
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def reference_scenes(n: int = 200) -> list[Scene]:
    rng = np.random.default_rng(REFERENCE_SEED)
    return [sample_scene(rng, BENIGN_SHAPES) for _ in range(n)]


def benign_bft_scenes(n: int = 64) -> list[Scene]:
    rng = np.random.default_rng(BENIGN_BFT_SEED)
    return [sample_scene(rng, BENIGN_SHAPES) for _ in range(n)]


def unsafe_bft_scenes(n: int = 64) -> list[Scene]:
    """A deliberately unsafe fine-tuning set: every image shows the forbidden concept."""
    rng = np.random.default_rng(UNSAFE_BFT_SEED)
    return [sample_scene(rng, SHAPES, require=FORBIDDEN) for _ in range(n)]
