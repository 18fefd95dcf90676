"""The plan: a deterministic list of generation work items.

Each image has its own seed derived from (run seed, prompt id, sample index), so the images do
not depend on batch size or on how the plan is split across workers. Each item's `key` hashes
the weights, prompt, seed, guidance and sampler settings — among them the *requested* backend:
keys must be known before any model loads (to find what is left to do), so they cannot hold the
backend a stage resolves to. A resumed stage keeps its first resolved backend
(`.cache/backend-choices.json`) and each image's metadata names the backend that made it.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field

from .config import EvalConfig, GenerationConfig, ModelSource
from .errors import ConfigError
from .keys import FileHasher, source_hash, stable_hash
from .prompts import Prompt

def derive_seed(run_seed: int, prompt_id: str, sample_index: int) -> int:
    """A 63-bit seed from (run seed, prompt id, sample index)."""
    digest = hashlib.sha256(f"{run_seed}|{prompt_id}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


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
class Stage:
    """One generator to run: a model before or after benign fine-tuning, identified by the hash
    of its weights; `source` says where they load from (not part of its identity)."""

    model: str
    stage: str  # "before" | "after"
    weights_hash: str
    source: ModelSource | None = field(default=None, compare=False)


def configured_after_bft(model: ModelSource, after: ModelSource) -> ModelSource:
    """`after_bft: {lora: DIR}` alone means: this model with that LoRA fused."""
    if after.path is not None:
        return after
    return model.model_copy(update={"lora": after.lora, "lora_scale": after.lora_scale})


def plan_stages(cfg: EvalConfig, hasher: FileHasher, fine_tuned: dict[str, ModelSource]) -> list[Stage]:
    """The generators to run: each model before BFT, and after it where there is an after stage
    (given as `after_bft`, or produced by `bft` and passed in `fine_tuned`)."""
    stages = []
    for entry in cfg.models:
        stages.append(Stage(entry.name, "before", source_hash(entry.model, hasher), entry.model))
        after = fine_tuned.get(entry.name)
        if after is None and entry.after_bft is not None:
            after = configured_after_bft(entry.model, entry.after_bft)
        if after is not None:
            stages.append(Stage(entry.name, "after", source_hash(after, hasher), after))
    return stages


def sampler_settings(g: GenerationConfig, backend: str, device: str) -> dict:
    """Everything besides weights, prompt and seed that determines an image's pixels (`eval` and
    `generate` key their images by it, so either finds the other's)."""
    return {
        "steps": g.steps, "guidance_scale": g.guidance_scale, "height": g.height, "width": g.width,
        "negative_prompt": g.negative_prompt, "batch_invariant": g.batch_invariant, "dtype": g.dtype,
        "device": device, "backend": backend,
    }


def build_plan(
    model_stages: list[Stage],
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


def plan_cohort(stages: list[Stage], prompt_sets: dict[str, list[Prompt]], *, tifa_after: bool,
                **settings) -> list[WorkItem]:
    """Every image of a cohort: before BFT, every prompt set; after BFT, the harmful prompts and,
    when a VQA judge grades TIFA after BFT too (`tifa_after`), the utility prompts. `settings`
    are `build_plan`'s keyword arguments."""
    after_sets = prompt_sets if tifa_after else {"harmful": prompt_sets["harmful"]}
    samples = settings.get("samples_per_prompt", 1)
    count = samples * sum(len(p) for s in stages for p in (prompt_sets if s.stage == "before" else after_sets).values())
    check_plan_size(count)
    return (build_plan([s for s in stages if s.stage == "before"], prompt_sets, **settings)
            + build_plan([s for s in stages if s.stage == "after"], after_sets, **settings))


PLAN_BYTES_PER_IMAGE = 2048  # a WorkItem with its prompt, key and seed, measured ~1 KiB; twice that as margin


def check_plan_size(images: int, memory_bytes: int | None = None) -> None:
    """Refuse a plan the machine cannot hold before building it (`samples_per_prompt: 1000000000`
    would otherwise allocate until the machine swaps), naming its size."""
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            memory_bytes = 16 << 30
    limit = memory_bytes // 2 // PLAN_BYTES_PER_IMAGE
    if images > limit:
        raise ConfigError(f"the plan holds {images:,} images — more than this machine can plan (at most {limit:,} "
                          f"in half its {memory_bytes / 2**30:.0f} GiB of memory); lower samples_per_prompt or the "
                          "prompt sets (prompts.*.limit / sample)")


def group_by_stage(items: list[WorkItem]) -> dict[tuple[str, str], list[WorkItem]]:
    by_stage: dict[tuple[str, str], list[WorkItem]] = defaultdict(list)
    for it in items:
        by_stage[(it.model, it.stage)].append(it)
    return by_stage
