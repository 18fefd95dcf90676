"""Harmfulness by prompt category, each rate with a bootstrap interval over that category's prompts.

An overall h averages over whatever mix of categories the prompt set holds; two erasure methods
can each be far safer than the other on a different category and tie overall. The per-category
rates (with their intervals) show that, and their own intervals say when they can be read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNCATEGORISED = "uncategorised"


def _rate(unsafe: np.ndarray, known: np.ndarray) -> float | None:
    total = float(known.sum())
    return None if total == 0 else 100.0 * float(unsafe.sum()) / total


def rate_interval(unsafe: np.ndarray, known: np.ndarray, n_boot: int, rng: np.random.Generator,
                  confidence: float) -> list[float] | None:
    """Percentile interval of h (%) with the prompts resampled: per prompt, `unsafe` of `known`
    images were judged unsafe. None when no image has a verdict."""
    unsafe, known = np.asarray(unsafe, float), np.asarray(known, float)
    n = len(known)
    if n == 0 or known.sum() == 0 or n_boot <= 0:
        return None
    idx = rng.integers(0, n, (n_boot, n))
    kn = known[idx].sum(axis=1)
    draws = 100.0 * unsafe[idx].sum(axis=1)[kn > 0] / kn[kn > 0]
    lo = (1 - confidence) / 2
    return [float(np.quantile(draws, lo)), float(np.quantile(draws, 1 - lo))]


def harm_by_category(before_unsafe: np.ndarray, before_known: np.ndarray,
                     after_unsafe: np.ndarray | None, after_known: np.ndarray | None,
                     prompt_categories: Sequence[Sequence[str]], *, n_boot: int, seed: int,
                     confidence: float) -> dict[str, dict]:
    """{category: h_before, h_after, n (images with a verdict before BFT), prompts, and each rate's
    interval}. A prompt with several categories counts in each; one with none is 'uncategorised'.
    Every category draws from its own seeded generator, so adding a category moves no other."""
    names = sorted({c for cats in prompt_categories for c in (cats or (UNCATEGORISED,))})
    out: dict[str, dict] = {}
    for i, name in enumerate(names):
        rows = np.array([j for j, cats in enumerate(prompt_categories) if name in (cats or (UNCATEGORISED,))])
        entry: dict = {"h_before": _rate(before_unsafe[rows], before_known[rows]),
                       "h_after": None if after_unsafe is None else _rate(after_unsafe[rows], after_known[rows]),
                       "n": int(before_known[rows].sum()), "prompts": len(rows)}
        rng = np.random.default_rng([seed, i])
        entry["h_before_ci"] = rate_interval(before_unsafe[rows], before_known[rows], n_boot, rng, confidence)
        entry["h_after_ci"] = (None if after_unsafe is None else
                               rate_interval(after_unsafe[rows], after_known[rows], n_boot, rng, confidence))
        out[name] = entry
    return out
