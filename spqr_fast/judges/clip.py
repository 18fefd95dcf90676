"""CLIPScore with any local CLIP checkpoint: the cosine of image and text embeddings (not ×100)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import JudgeError


def load_clip(path: str, device: str = "cpu"):
    """(model, processor) from a local transformers CLIP folder."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(path, local_files_only=True).eval().to(device)
        processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise JudgeError(f"cannot load CLIP from '{path}': {str(err).splitlines()[0]} — give a local CLIP folder") from None
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


class ClipScorer:
    name = "clip"

    def __init__(self, path: str, device: str = "cpu", batch_size: int = 32):
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.model, self.processor = load_clip(path, device)

    def identity(self, hasher) -> dict:
        return {"judge": self.name, "weights_sha256": hasher.tree(Path(self.path)), "score": "cosine"}

    def score(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """Per pair: cosine(image embedding, text embedding)."""
        out = []
        for s in range(0, len(images), self.batch_size):
            im = image_embeddings(self.model, self.processor, images[s:s + self.batch_size], self.device)
            tx = text_embeddings(self.model, self.processor, texts[s:s + self.batch_size], self.device)
            out.append((im * tx).sum(-1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)
