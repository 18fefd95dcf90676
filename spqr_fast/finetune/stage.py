"""The finetune stage of an evaluation: each model's configured benign fine-tuning, trained once
per key (base weights, dataset, profile) and found in the BFT cache on every later run."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..config import EvalConfig, ModelSource
from ..errors import SpqrError
from ..keys import FileHasher, source_hash
from ..store import file_lock, read_json


def finetune_models(cfg: EvalConfig, out: Path, hasher: FileHasher, console: Console,
                    allow_training: bool = True) -> tuple[dict[str, ModelSource], dict[str, dict]]:
    """(after-BFT source per model, BFT card per model, losses left out). A merge of shards passes
    `allow_training=False`: its BFT results must come from the shards."""
    from .dataset import load_bft_dataset
    from .trainer import CARD_FILE, after_bft_source, bft_key, finetune

    cache = Path(cfg.finetune_cache) if cfg.finetune_cache else out / "bft"
    sources, cards = {}, {}
    for entry in cfg.models:
        if entry.bft is None:
            continue
        dataset = load_bft_dataset(entry.bft.dataset)
        key = bft_key(source_hash(entry.model, hasher), dataset, entry.bft)
        folder = cache / key
        card_path = folder / CARD_FILE
        # Runs sharing a BFT cache take turns per key: the second finds the first's result.
        with file_lock(cache / f".{key}.lock", on_wait=lambda: console.print(
                f"BFT {entry.name}: waiting for another run training key {key}")):
            if card_path.is_file():
                card = read_json(card_path, "BFT card")
                console.print(f"BFT {entry.name}: cached ({entry.bft.profile}, key {key})")
            elif not allow_training:
                raise SpqrError(f"BFT of '{entry.name}' (key {key}) is in no shard — merge the shards' folders "
                                "as written, with their bft/ folders")
            else:
                console.print(f"BFT {entry.name}: {entry.bft.profile} on {dataset.root.name} ({len(dataset)} images)")
                card = finetune(entry.model, entry.bft, folder, resume=True, console=console, hasher=hasher,
                                dataset=dataset)
        sources[entry.name] = after_bft_source(entry.model, folder, card)
        cards[entry.name] = {k: v for k, v in card.items() if k != "losses"}
    return sources, cards
