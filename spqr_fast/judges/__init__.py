"""The judges, behind three small protocols: a safety judge (one verdict per image), a text–image
scorer (CLIPScore) and a feature extractor (FID). The VQA judge (`vqa.py`) answers questions per
image and has its own record shape. `judging.py` builds the configured ones and runs them."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Judge(Protocol):
    name: str  # its record store is named after it (and its identity's hash)
    batch_size: int

    def identity(self, hasher) -> dict:
        """Everything that determines its records (weights hash, thresholds): a change re-judges."""


class SafetyJudge(Judge, Protocol):
    def judge(self, images: list[np.ndarray]) -> list[dict]:
        """One record per image with `unsafe`: True, False, or None when the judge could not tell."""


class TextImageScorer(Judge, Protocol):
    def score(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """One score per (image, text) pair."""


class FeatureExtractor(Judge, Protocol):
    def features(self, images: list[np.ndarray]) -> np.ndarray:
        """One feature row per image."""
