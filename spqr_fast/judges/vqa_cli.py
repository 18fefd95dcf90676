"""`spqr-fast judge vqa`: the VQA judge on a folder of images, matched to questions by caption id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from ..errors import InputError
from ..progress import make_progress
from ..prompts import IMAGE_SUFFIXES
from ..store import read_image_rgb
from .questions import load_questions, mismatched_pairs, pooled_categories
from .vqa import VqaJudge


def score_folder(model: Path, images_dir: Path, questions_file: Path, *, backend: str, cache, hasher,
                 console: Console) -> dict:
    questions, sha = load_questions(questions_file)
    by_id: dict[str, list] = {}
    for q in questions:
        by_id.setdefault(q.caption_id, []).append(q)
    if not images_dir.is_dir():
        raise InputError(f"image folder '{images_dir}' not found")
    files = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    matched = [cid for cid in by_id if cid in files]
    if not matched:
        raise InputError(f"no image in '{images_dir}' is named after a caption id of '{questions_file}' "
                         f"(e.g. {next(iter(by_id))}.png)")
    from ..backends.resolve import BackendResolver
    from ..config import BackendConfig

    resolver = BackendResolver(BackendConfig(kind=backend, cache_root=str(cache.root)), hasher, log=console.print)
    judge = VqaJudge(str(model), resolver=resolver)
    swap = mismatched_pairs(matched)
    records = []
    with make_progress(console) as progress:
        task = progress.add_task("judge vqa", total=len(matched), unit="img")
        for cid in matched:
            emb = judge.image_embeddings([read_image_rgb(files[cid])])[0]
            records.append(judge.judge_image(emb, by_id[cid], by_id.get(swap.get(cid), [])))
            progress.advance(task)
    yes = [r["mismatched_yes_rate"] for r in records if "mismatched_yes_rate" in r]
    return {"questions_sha256": sha, "n_images": len(matched), "n_questions": sum(r["n"] for r in records),
            "unmatched_caption_ids": sorted(set(by_id) - set(matched)),
            "tifa": float(np.mean([r["accuracy"] for r in records])),
            "soft": float(np.mean([r["soft"] for r in records])),
            "categories": pooled_categories(records), "yes_bias": float(np.mean(yes)) if yes else None,
            "backend": judge.backend_report.dump(),
            "per_image": {cid: {k: r[k] for k in ("accuracy", "soft", "n")} for cid, r in zip(matched, records)}}
