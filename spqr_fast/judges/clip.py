"""CLIPScore with any local CLIP checkpoint: the cosine of image and text embeddings (not ×100)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import JudgeError
from ..schema import BackendReport
from .records import ClipRecord
from .spec import JudgeEnv, JudgeSpec


def _model_type(folder: Path) -> str | None:
    """`model_type` from a transformers folder's config.json (None when it cannot be read)."""
    import json

    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None


def load_clip(path: str, device: str = "cpu"):
    """(model, processor) from a local transformers CLIP folder."""
    from transformers import CLIPModel, CLIPProcessor

    kind = _model_type(Path(path))
    if kind not in (None, "clip"):
        raise JudgeError(f"'{path}' holds a '{kind}' model, not CLIP — point judges.clip.path at a CLIP folder")
    try:
        model = CLIPModel.from_pretrained(path, local_files_only=True).eval().to(device)
        processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: size mismatch of a foreign checkpoint
        raise JudgeError(f"cannot load CLIP from '{path}': {str(err).splitlines()[0][:200]} — give a local CLIP "
                         "folder") from None
    return model, processor


def image_embeddings(model, processor, images: list[np.ndarray], device: str):
    import torch

    with torch.inference_mode():
        pixels = processor(images=list(images), return_tensors="pt")["pixel_values"].to(device)
        emb = model.get_image_features(pixel_values=pixels)
    return torch.nn.functional.normalize(emb.float(), dim=-1)


def text_embeddings(model, processor, texts: list[str], device: str):
    import torch

    with torch.inference_mode():
        tok = processor(text=list(texts), return_tensors="pt", padding=True, truncation=True).to(device)
        emb = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
    return torch.nn.functional.normalize(emb.float(), dim=-1)


class OrtClipTowers:
    """Both CLIP towers in one graph exported by Optimum (task zero-shot-image-classification);
    its `image_embeds` and `text_embeds` outputs are already L2-normalised."""

    def __init__(self, folder: Path, providers: list[str], threads: int | None = None):
        from ..backends.ort_backend import OrtSession

        self.session = OrtSession(folder / "model.onnx", providers, threads).session
        self.providers = self.session.get_providers()

    def embeddings(self, pixel_values: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray):
        image, text = self.session.run(["image_embeds", "text_embeds"], {
            "pixel_values": pixel_values.astype(np.float32), "input_ids": input_ids.astype(np.int64),
            "attention_mask": attention_mask.astype(np.int64)})
        return image, text


def export_clip(path: str, cache, hasher, log=print) -> Path:
    """The Optimum export of a local CLIP folder, from the artefact cache (rebuilt if invalid)."""
    from optimum.exporters.onnx import main_export

    from ..export.onnx_export import _version

    inputs = {"weights": hasher.tree(Path(path)), "component": "clip", "precision": "fp32",
              "task": "zero-shot-image-classification", "optimum": _version("optimum-onnx"),
              "onnx": _version("onnx"), "torch": _version("torch")}

    def build(folder: Path) -> dict:
        main_export(path, output=str(folder), task="zero-shot-image-classification", do_validation=False)
        return {"model": str(path)}

    return cache.get_or_build("onnx-clip", inputs, build, label="CLIP artefact", log=log)


class ClipScorer:
    """CLIPScore on ONNX Runtime (Optimum export, parity-checked against torch) or eager torch."""

    name = "clip"

    def __init__(self, path: str, device: str = "cpu", batch_size: int = 32, resolver=None,
                 tolerance: float = 1e-4):
        """`resolver` (a `backends.resolve.BackendResolver`) may move the towers to ONNX Runtime;
        without one they stay on torch."""
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.model, self.processor = load_clip(path, device)
        self.towers: OrtClipTowers | None = None
        rng = np.random.default_rng(0)
        probe = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
        texts = ["a photo of a cat", "a red bus"]

        def parity_error(towers) -> float:
            return float(np.abs(self._score_ort(probe, texts, towers) - self._score_torch(probe, texts)).max())

        self.backend_report = BackendReport(requested="torch", chosen="torch")
        if resolver is not None:
            self.towers, self.backend_report = resolver.resolve_judge(
                "CLIP", lambda providers: OrtClipTowers(export_clip(self.path, resolver.cache, resolver.hasher,
                                                                    resolver.log), providers, resolver.threads),
                parity_error, tolerance)

    def _score_torch(self, images, texts) -> np.ndarray:
        im = image_embeddings(self.model, self.processor, images, self.device)
        tx = text_embeddings(self.model, self.processor, texts, self.device)
        return (im * tx).sum(-1).cpu().numpy()

    def _score_ort(self, images, texts, towers=None) -> np.ndarray:
        pixels = self.processor(images=list(images), return_tensors="np")["pixel_values"]
        tok = self.processor(text=list(texts), return_tensors="np", padding=True, truncation=True)
        im, tx = (towers or self.towers).embeddings(pixels, tok["input_ids"], tok["attention_mask"])
        return (im * tx).sum(-1)

    def score(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """Per pair: cosine(image embedding, text embedding)."""
        fn = self._score_ort if self.towers is not None else self._score_torch
        out = [fn(images[s:s + self.batch_size], texts[s:s + self.batch_size])
               for s in range(0, len(images), self.batch_size)]
        return np.concatenate(out).astype(np.float64)


def identity(c, hasher) -> dict:
    """What determines the CLIPScores (`c`: `judges.clip`). The backend is not part of it: both
    compute the same score (parity-checked)."""
    return {"judge": "clip", "weights_sha256": hasher.tree(Path(c.path)), "score": "cosine"}


def build(c, env: JudgeEnv) -> ClipScorer:
    return ClipScorer(c.path, env.device, env.batch(c.batch_size), resolver=env.resolver)


SPEC = JudgeSpec("clip", "clip_score", ClipRecord, identity, build, resolves_backend=True)
