"""VQA judge throughput, ONNX Runtime vs torch on the same inputs: images/s through the vision
graph and questions/s through the answer graph, at the tiny size and at BLIP-base size (preset blip-base) (built
from transformers' default BlipConfig, which is BLIP-base, with random weights)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console


def _build(preset: str, folder: Path) -> Path:
    from ..demo.tiny import build_tiny_blip

    questions = ["is there a red bus?", "how many cats are there?", "what color is the sky?"]
    if preset == "tiny":
        return build_tiny_blip(0, folder, questions + ["red", "blue", "two"])
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    from ..demo.tiny import _vqa_vocabulary

    folder.mkdir(parents=True, exist_ok=True)
    vocab = _vqa_vocabulary(questions + ["yes", "no", "red", "blue", "two"])
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BlipConfig()  # BLIP-base: ViT-B/16 at 384 px, 12-layer BERT-base text encoder/decoder
    config.text_config.bos_token_id = vocab.index("[DEC]")
    config.text_config.sep_token_id = vocab.index("[SEP]")
    torch.manual_seed(0)
    BlipForQuestionAnswering(config).eval().save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}),
                  tokenizer=BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")).save_pretrained(folder)
    return folder


def run_vqa_bench(preset: str, *, images: int, questions: int, reps: int, cache_root: str | None,
                  console: Console, device: str = "cpu", threads: int | None = None) -> dict:
    from ..backends.resolve import BackendResolver
    from ..config import BackendConfig
    from ..keys import FileHasher
    from .backends_bench import _time
    from ..judges.vqa import VqaJudge

    with tempfile.TemporaryDirectory(prefix="spqr-vqa-bench-") as tmp:
        console.print(f"building the {preset} BLIP VQA model from its config (random weights)")
        path = str(_build(preset, Path(tmp) / "blip"))
        t0 = time.perf_counter()
        judges = {"torch": VqaJudge(path, device=device),
                  "ort": VqaJudge(path, device=device, resolver=BackendResolver(
                      BackendConfig(kind="ort", cache_root=None if cache_root is None else str(cache_root)), FileHasher(None), log=console.print,
                      threads=threads))}
        setup = time.perf_counter() - t0
        ref = judges["torch"]
        size = ref.processor.image_processor.size["height"]
        rng = np.random.default_rng(0)
        pixels = ref.processor(images=[rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(images)],
                               return_tensors="np")["pixel_values"].astype(np.float32)
        embeds = ref.graphs.image_embeds(pixels[:1]).repeat(questions, axis=0)
        ids, mask = ref._tokenize(["is there a red bus?"] * questions)
        rows = []
        for name, judge in judges.items():
            if name == "ort" and not (judge.backend_report.chosen or "").startswith("ort"):
                rows.append({"backend": name, "error": "; ".join(s.reason for s in judge.backend_report.skipped)})
                continue
            g = judge.graphs
            vision = _time(lambda: g.image_embeds(pixels), reps)
            answer = _time(lambda: g.first_token_logits(embeds, ids, mask), reps)
            rows.append({"backend": name, "vision_images_per_s": images / vision, "answer_questions_per_s": questions / answer})
        for r in rows:
            if "error" not in r:
                r["vision_speedup_vs_torch"] = r["vision_images_per_s"] / rows[0]["vision_images_per_s"]
                r["answer_speedup_vs_torch"] = r["answer_questions_per_s"] / rows[0]["answer_questions_per_s"]
        return {"preset": preset, "image_size": size, "images_per_batch": images, "questions_per_batch": questions,
                "reps": reps, "setup_seconds_incl_export": setup,
                "parity": judges["ort"].backend_report.parity, "rows": rows}
