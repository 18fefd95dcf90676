"""`spqr-fast erase`: apply UCE or ESD to a model and write the changed UNet tensors + a card."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from ..config import ModelSource
from ..models import load_pipeline
from ..keys import FileHasher, source_hash
from ..store import atomic_write_json


def erase(src: ModelSource, method: str, concepts: list[str], out_file: Path, *, preserve: list[str] | None = None,
          targets: list[str] | None = None, uce=None, esd=None, device: str = "cpu", resolution: int | None = None,
          console: Console | None = None) -> dict:
    """Erase `concepts` from the model; writes OUT (safetensors, changed UNet keys) and OUT.card.json."""
    from safetensors.torch import save_file

    from ..progress import make_progress
    from .esd import EsdSettings, esd_finetune
    from .uce import UceSettings, uce_edit

    console = console or Console(stderr=True)
    pipe, _ = load_pipeline(src, device=device, dtype="fp32")
    start = time.time()
    if method == "uce":
        settings = uce or UceSettings()
        changed = uce_edit(pipe, concepts, targets, preserve, settings)
    elif method == "esd":
        settings = esd or EsdSettings()
        with make_progress(console) as progress:
            task = progress.add_task("ESD", total=settings.iterations)
            changed = esd_finetune(pipe, concepts, settings, height=resolution, width=resolution,
                                   on_step=lambda i, loss: progress.update(task, completed=i))
    else:
        raise ValueError(f"unknown erasure method '{method}' (uce, esd)")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file(changed, str(out_file))
    card = {"method": method, "concepts": concepts, "targets": targets, "preserve": preserve,
            "settings": asdict(settings), "source": json.loads(src.model_dump_json()),
            "source_hash": source_hash(src, FileHasher(None)), "changed_tensors": len(changed),
            "seconds": round(time.time() - start, 1),
            "load_with": {"path": str(out_file), "base": src.path, "allow_missing_keys": True}}
    atomic_write_json(out_file.with_suffix(".card.json"), card)
    return card
