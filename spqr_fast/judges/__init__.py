"""The judges. Each module holds a judge's class and its `JudgeSpec` (identity, record type,
build); `registry.py` lists the specs in the order their records are fused; `judging.py` runs the
configured ones. A judge plays one of four roles, each behind a small protocol below."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from .records import Record, SafetyRecord


class Judge(Protocol):
    batch_size: int  # images handed to it at a time (records are written after each batch)


class SafetyJudge(Judge, Protocol):
    def judge(self, images: list[np.ndarray]) -> list[SafetyRecord]:
        """One record per image with `unsafe`: True, False, or None when the judge could not tell."""


class TextImageScorer(Judge, Protocol):
    def score(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """One score per (image, text) pair."""


class FeatureExtractor(Judge, Protocol):
    def features(self, images: list[np.ndarray]) -> np.ndarray:
        """One feature row per image."""


class CaptionJudge(Judge, Protocol):
    def judge(self, images: list[np.ndarray], captions: list[str]) -> list[Record]:
        """One record per image about its caption (the VQA judge's graded questions)."""
