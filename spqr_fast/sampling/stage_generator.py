"""Generating the images of one model stage into the image store: load the pipeline and pick
the backend once, then run batches. The local executor, every Ray actor and `spqr-fast generate`
use this class, so all produce the same images (per-image seeds) with the same metadata."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import BackendConfig, GenerationConfig
from ..models import load_pipeline
from ..keys import FileHasher
from ..plan import WorkItem
from ..schema import StageLoad
from ..store import ImageStore, atomic_write_json
from .sampler import DiffusionSampler


def image_meta(it: WorkItem, weights_hash: str, backend: str) -> dict:
    """Stored beside each image. `backend` is the one that made it: the image key hashes the
    requested backend (keys are needed before any model loads, to know what is left to do), and
    a stage keeps its first choice when resumed (`backend-choices.json`)."""
    return {"model": it.model, "stage": it.stage, "prompt_set": it.prompt_set, "prompt_id": it.prompt.id,
            "prompt": it.prompt.text, "sample_index": it.sample_index, "seed": it.seed, "guidance": it.guidance,
            "weights_hash": weights_hash, "backend": backend}


class StageGenerator:
    def __init__(self, generation: GenerationConfig, backend: BackendConfig, out: Path, device: str,
                 log: Callable[[str], None] = print, threads: int | None = None, hasher: FileHasher | None = None):
        """`threads`: intra-op threads of its ONNX Runtime sessions (None: ORT's own); `hasher`: the
        run's (default: the output folder's memo)."""
        from ..backends.resolve import BackendResolver

        self.generation, self.backend = generation, backend
        self.device = device
        self.store = ImageStore(out)
        self.hasher = hasher or FileHasher.for_folder(Path(out))
        self.choices_file = Path(out) / ".cache" / "backend-choices.json"
        self.resolver = BackendResolver(backend, self.hasher, log=log, threads=threads)
        self._loaded: tuple[str, DiffusionSampler, dict] | None = None  # (weights hash, sampler, report)

    def release(self) -> None:
        """Drop the loaded pipeline and its sessions (before the judges load)."""
        self._loaded = None
        self.resolver.release()

    def load(self, stage, images: int | None = None, within_seconds: float | None = None) -> StageLoad:
        """Load `stage` (a plan Stage) unless it is the one already loaded; returns its load report.
        `images` (still to generate) lets `backend: auto` weigh an export against its saving;
        `within_seconds`, the wall clock left to a budgeted run, caps the images that saving counts."""
        if self._loaded is not None and self._loaded[0] == stage.weights_hash:
            return self._loaded[2]
        self.release()  # free the previous model (and its sessions) before loading the next
        g = self.generation
        pipe, report = load_pipeline(stage.source, device=self.device, dtype=g.dtype)
        choice_key = f"{stage.weights_hash}|{self.backend.kind}|{self.device}|{g.dtype}"
        components, backend = self.resolver.resolve(stage.source, pipe, height=g.height, width=g.width,
                                                    label=f"{stage.model} [{stage.stage} BFT]",
                                                    planned=None if images is None else (images, g.steps),
                                                    earlier=self._choices().get(choice_key),
                                                    within_seconds=within_seconds)
        assert backend.chosen is not None
        self._record_choice(choice_key, backend.chosen)
        sampler = DiffusionSampler(components, steps=g.steps, height=g.height, width=g.width,
                                   negative_prompt=g.negative_prompt, batch_invariant=g.batch_invariant)
        self._loaded = (stage.weights_hash, sampler, StageLoad(**report.as_dict(), backend=backend))
        return self._loaded[2]

    def _choices(self) -> dict[str, str]:
        """The backend each stage ran on in this output folder (read back when a run resumes)."""
        try:
            return json.loads(self.choices_file.read_text())
        except (OSError, ValueError):
            return {}

    def _record_choice(self, key: str, chosen: str) -> None:
        choices = self._choices()
        if choices.get(key) != chosen:
            atomic_write_json(self.choices_file, {**choices, key: chosen})

    def run(self, stage, items: Sequence[WorkItem], on_batch: Callable[[int], None] | None = None) -> int:
        """Generate the items not yet stored; returns how many were generated."""
        todo = [it for it in items if not self.store.has(it.key)]
        if not todo:
            return 0
        self.load(stage, len(todo))
        sampler, report = self._loaded[1], self._loaded[2]  # type: ignore[index]
        bs = self.generation.batch_size
        for s in range(0, len(todo), bs):
            batch = todo[s:s + bs]
            images = sampler.generate([it.prompt.text for it in batch], [it.seed for it in batch],
                                      [it.guidance for it in batch])
            for it, im in zip(batch, images):
                self.store.put(it.key, im, image_meta(it, stage.weights_hash, report.backend.chosen))
            if on_batch:
                on_batch(len(batch))
        return len(todo)
