"""Fréchet Inception Distance between two sets of features, computed without a matrix sqrt.

FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁ Σ₂).

With Σᵢ = AᵢAᵢᵀ (Aᵢ the centred features / √(nᵢ−1), d×nᵢ), the non-zero eigenvalues of Σ₁Σ₂
are the squared singular values of A₁ᵀA₂, so tr √(Σ₁Σ₂) is the nuclear norm of A₁ᵀA₂ — exact,
and an n₁×n₂ problem instead of a d×d `sqrtm` (fast for bootstrap resamples, no complex parts).
When the sets are larger than d, the d×d symmetric form √Σ₁ Σ₂ √Σ₁ is used instead.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (n−1)-normalised covariance, as pytorch-fid computes them."""
    x = np.asarray(features, dtype=np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(axis=0)) / np.sqrt(max(len(x) - 1, 1))


def frechet_distance(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between two feature matrices of shape [n, d] (each n ≥ 2)."""
    f1 = np.asarray(feats1, dtype=np.float64)
    f2 = np.asarray(feats2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature shapes differ: {f1.shape} vs {f2.shape}")
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError("FID needs at least two images per set")
    if not (np.isfinite(f1).all() and np.isfinite(f2).all()):
        raise ValueError("FID features hold NaN or infinite values — the feature network's output is broken")
    mu_diff = f1.mean(axis=0) - f2.mean(axis=0)
    a1, a2 = _centred(f1), _centred(f2)
    tr1 = float(np.sum(a1 * a1))
    tr2 = float(np.sum(a2 * a2))
    d = f1.shape[1]
    if min(len(f1), len(f2)) <= d:
        cross = float(np.linalg.svd(a1 @ a2.T, compute_uv=False).sum())
    else:
        s1 = a1.T @ a1
        s2 = a2.T @ a2
        w, v = np.linalg.eigh(s1)
        root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        ev = np.linalg.eigvalsh(root1 @ s2 @ root1)
        cross = float(np.sqrt(np.clip(ev, 0, None)).sum())
    return float(mu_diff @ mu_diff + tr1 + tr2 - 2.0 * cross)
