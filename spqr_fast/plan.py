"""The plan: a deterministic list of generation work items.

Each image has its own seed derived from (run seed, prompt id, sample index), so the images do
not depend on batch size or on how the plan is split across workers. Each item's `key` hashes
everything that determines its pixels; the image store is addressed by it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .prompts import Prompt

STAGES = ("before", "after")


def derive_seed(run_seed: int, prompt_id: str, sample_index: int) -> int:
    """A 63-bit seed from (run seed, prompt id, sample index)."""
    digest = hashlib.sha256(f"{run_seed}|{prompt_id}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def canonical(obj: object) -> object:
    """One form per value: integral floats as ints (16.0 and 16 are one setting, whether it came
    from YAML, a default or a JSON round trip), tuples as lists, keys as strings."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def stable_hash(obj: object, n: int = 24) -> str:
    """Hex digest of a JSON-serialisable object in canonical form (sorted keys), for cache keys."""
    blob = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


@dataclass(frozen=True)
class WorkItem:
    model: str
    stage: str  # "before" | "after" benign fine-tuning
    prompt_set: str  # "harmful" | "utility"
    prompt: Prompt
    sample_index: int
    seed: int
    guidance: float
    key: str


@dataclass(frozen=True)
class ModelStage:
    """One generator to run: a model at a stage, identified by the hash of its weights."""

    model: str
    stage: str
    weights_hash: str


def build_plan(
    model_stages: list[ModelStage],
    prompt_sets: dict[str, list[Prompt]],
    *,
    run_seed: int,
    samples_per_prompt: int,
    sampler_settings: dict,
    use_file_seeds: dict[str, bool] | None = None,
) -> list[WorkItem]:
    """Every (model stage, prompt set, prompt, sample) as one item, in a fixed order."""
    use_file_seeds = use_file_seeds or {}
    items = []
    for ms in model_stages:
        for set_name, prompts in prompt_sets.items():
            for p in prompts:
                for s in range(samples_per_prompt):
                    file_seed = use_file_seeds.get(set_name) and p.seed is not None
                    seed = (p.seed + s) if file_seed else derive_seed(run_seed, p.id, s)
                    guidance = p.guidance if (file_seed and p.guidance is not None) else sampler_settings["guidance_scale"]
                    key = stable_hash(
                        {"weights": ms.weights_hash, "prompt": p.text, "seed": seed, "guidance": guidance,
                         "sampler": sampler_settings}, n=32)
                    items.append(WorkItem(ms.model, ms.stage, set_name, p, s, seed, guidance, key))
    return items
