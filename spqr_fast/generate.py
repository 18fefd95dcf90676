"""`spqr-fast generate`: images for a prompt file from one model, on the chosen backend, into the
same content-addressed store `eval` uses (so a later eval with the same settings reuses them)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .backends.resolve import BackendResolver
from .config import BackendConfig, GenerationConfig, ModelSource
from .models import load_pipeline, pick_device
from .keys import FileHasher, source_hash
from .plan import Stage, build_plan
from .progress import make_progress
from .prompts import Prompt
from .sampling.sampler import DiffusionSampler
from .store import ImageStore, atomic_write_bytes


def generate_images(src: ModelSource, prompts: list[Prompt], gen: GenerationConfig, backend: BackendConfig,
                    out: Path, *, seed: int, console: Console) -> list[dict]:
    """Generate (or find) every image; returns one index record per image."""
    out = Path(out)
    hasher = FileHasher(out / ".cache" / "file-hashes.json")
    device = pick_device(gen.device)
    settings = {"steps": gen.steps, "guidance_scale": gen.guidance_scale, "height": gen.height, "width": gen.width,
                "negative_prompt": gen.negative_prompt, "batch_invariant": gen.batch_invariant, "dtype": gen.dtype,
                "device": device, "backend": backend.kind}
    stage = Stage("model", "before", source_hash(src, hasher), src)
    items = build_plan([stage], {"prompts": prompts}, run_seed=seed, samples_per_prompt=gen.samples_per_prompt,
                       sampler_settings=settings)
    store = ImageStore(out)
    todo = [it for it in items if not store.has(it.key)]
    chosen = "cached"
    if todo:
        pipe, _ = load_pipeline(src, device=device, dtype=gen.dtype)
        resolver = BackendResolver(backend, hasher, log=lambda m: console.print(escape(m)))
        components, report = resolver.resolve(src, pipe, height=gen.height, width=gen.width,
                                              planned=(len(todo), gen.steps))
        chosen = report["chosen"]
        sampler = DiffusionSampler(components, steps=gen.steps, height=gen.height, width=gen.width,
                                   negative_prompt=gen.negative_prompt, batch_invariant=gen.batch_invariant)
        with make_progress(console) as progress:
            task = progress.add_task(f"generate [{chosen}]", total=len(items), completed=len(items) - len(todo),
                                     unit="img")
            for s in range(0, len(todo), gen.batch_size):
                batch = todo[s:s + gen.batch_size]
                images = sampler.generate([it.prompt.text for it in batch], [it.seed for it in batch],
                                          [it.guidance for it in batch])
                for it, im in zip(batch, images):
                    store.put(it.key, im, {"prompt_id": it.prompt.id, "prompt": it.prompt.text, "seed": it.seed,
                                           "sample_index": it.sample_index, "backend": chosen,
                                           "weights_hash": stage.weights_hash})
                progress.advance(task, len(batch))
    index = [{"prompt_id": it.prompt.id, "prompt": it.prompt.text, "sample_index": it.sample_index, "seed": it.seed,
              "image": str(store.image_path(it.key).relative_to(out))} for it in items]
    import json

    atomic_write_bytes(out / "index.jsonl", "".join(json.dumps(r) + "\n" for r in index).encode())
    console.print(f"{len(items)} images ({len(todo)} new, backend {chosen}) — index in {out / 'index.jsonl'}")
    return index
