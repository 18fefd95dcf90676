"""`spqr-fast generate`: images for a prompt file from one model, on the chosen backend, into the
same content-addressed store `eval` uses (so a later eval with the same settings reuses them)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .config import BackendConfig, GenerationConfig, ModelSource
from .keys import FileHasher, source_hash
from .models import pick_device
from .plan import Stage, build_plan, sampler_settings
from .progress import make_progress
from .prompts import Prompt
from .safe_text import shown
from .sampling.stage_generator import StageGenerator
from .store import ImageStore, atomic_write_bytes, file_lock, remove_temp_files


def generate_images(src: ModelSource, prompts: list[Prompt], gen: GenerationConfig, backend: BackendConfig,
                    out: Path, *, seed: int, console: Console) -> list[dict]:
    """Generate (or find) every image; returns one index record per image. The images are those
    `eval` makes of this model before BFT (same keys, same metadata, same generator)."""
    out = Path(out)
    device = pick_device(gen.device)
    name = Path(src.path).name if src.path else "model"
    hasher = FileHasher.for_folder(out)  # this command's one hasher
    stage = Stage(name, "before", source_hash(src, hasher), src)
    items = build_plan([stage], {"prompts": prompts}, run_seed=seed, samples_per_prompt=gen.samples_per_prompt,
                       sampler_settings=sampler_settings(gen, backend.kind, device))
    with file_lock(out / ".lock", on_wait=lambda: console.print(f"waiting for another run writing to {shown(out)}")):
        removed = remove_temp_files(out)  # a killed run's half-written files
        if removed:
            console.print(f"removed {removed} temporary file(s) left by an interrupted run")
        return _generate_locked(stage, items, gen, backend, out, device, hasher, console)


def _generate_locked(stage: Stage, items, gen: GenerationConfig, backend: BackendConfig, out: Path, device: str,
                     hasher: FileHasher, console: Console) -> list[dict]:
    import json

    store = ImageStore(out)
    todo = sum(not store.has(it.key) for it in items)
    chosen = "cached"
    if todo:
        generator = StageGenerator(gen, backend, out, device, log=lambda m: console.print(shown(m)), hasher=hasher)
        chosen = generator.load(stage, todo).backend.chosen
        with make_progress(console) as progress:
            task = progress.add_task(f"generate [{chosen}]", total=len(items), completed=len(items) - todo, unit="img")
            generator.run(stage, items, on_batch=lambda n: progress.advance(task, n))
        generator.release()
    index = [{"prompt_id": it.prompt.id, "prompt": it.prompt.text, "sample_index": it.sample_index, "seed": it.seed,
              "image": str(store.image_path(it.key).relative_to(out))} for it in items]
    atomic_write_bytes(out / "index.jsonl", "".join(json.dumps(r) + "\n" for r in index).encode())
    console.print(f"{len(items)} images ({todo} new, backend {chosen}) — index in {out / 'index.jsonl'}")
    return index
