"""Anytime-valid confidence sequences for the mean of a finite population of bounded values drawn
without replacement — the statistics that let an audit stop as soon as it knows.

The construction is the hedged betting capital of Waudby-Smith & Ramdas ("Estimating means of
bounded random variables by betting", JRSS-B 2024, §4 and §6 for sampling without replacement):
for each candidate mean m, a gambler bets on the next value being above (and, hedged, below) the
mean of the values *not yet drawn* if the population mean were m,

    m_t(m) = (N·m − Σ_{i<t} x_i) / (N − t + 1),

with a predictable bet size λ_t (their "predictable plug-in", truncated so the capital stays
positive). Under the true m the capital is a non-negative martingale, so by Ville's inequality it
ever exceeds 1/α with probability ≤ α: the set of m whose capital stays below 1/α covers the true
mean at every t simultaneously. Stopping whenever one likes — after any chunk, on any rule — keeps
the error ≤ α; re-checking a fixed-n interval after each chunk does not (tests/test_audit_statistics.py).
Values must lie in [0, 1] (callers rescale); candidates that the values already drawn make
impossible are dropped, so once every value is drawn the interval is the exact mean.
"""

from __future__ import annotations

import math

import numpy as np

BET_CAP = 0.75  # the largest fraction of capital staked (WSR's c)


class BettingConfidenceSequence:
    """Two-sided (1 − α) confidence sequence for the mean of N values in [0, 1] drawn without
    replacement. `shape` runs many independent sequences at once (simulations)."""

    def __init__(self, population: int, alpha: float, *, grid: int = 2001, shape: tuple[int, ...] = ()):
        if population < 1:
            raise ValueError("population must hold at least one value")
        if not 0 < alpha < 1:
            raise ValueError("alpha must lie in (0, 1)")
        self.N, self.alpha = population, alpha
        self.m = np.linspace(0.0, 1.0, grid)
        self.t = 0
        self.total = np.zeros(shape)
        self.mean_hat = np.full(shape, 0.5)
        self.var_hat = np.full(shape, 0.25)
        self.squares = np.zeros(shape)
        self.log_up = np.zeros((*shape, grid))
        self.log_down = np.zeros((*shape, grid))
        self.lo = np.zeros(shape)
        self.hi = np.ones(shape)

    def update(self, x) -> None:
        """One more value (per sequence)."""
        x = np.asarray(x, dtype=float)
        if np.any((x < 0) | (x > 1)) or not np.all(np.isfinite(x)):
            raise ValueError("values must lie in [0, 1]")
        if self.t >= self.N:
            raise ValueError("every value of the population has been drawn")
        t = self.t + 1
        lam = np.minimum(np.sqrt(2 * math.log(2 / self.alpha) / (self.var_hat * t * math.log(1 + t))), BET_CAP)
        m_next = (self.N * self.m - self.total[..., None]) / (self.N - t + 1)
        possible = (m_next >= 0) & (m_next <= 1)
        m_safe = np.clip(m_next, 1e-12, 1 - 1e-12)
        lam_up = np.minimum(lam[..., None], BET_CAP / m_safe)
        lam_down = np.minimum(lam[..., None], BET_CAP / (1 - m_safe))
        dev = x[..., None] - m_next
        with np.errstate(invalid="ignore", divide="ignore"):
            self.log_up = np.where(possible, self.log_up + np.log1p(lam_up * dev), np.inf)
            self.log_down = np.where(possible, self.log_down + np.log1p(-lam_down * dev), np.inf)
        self.t = t
        self.total = self.total + x
        # WSR's predictable estimates for the next bet: μ̂_t = (1/2 + Σx) / (t + 1),
        # σ̂²_t = (1/4 + Σ (x_i − μ̂_i)²) / (t + 1)
        self.mean_hat = (0.5 + self.total) / (t + 1)
        self.squares = self.squares + (x - self.mean_hat) ** 2
        self.var_hat = (0.25 + self.squares) / (t + 1)
        self._narrow()

    def _narrow(self) -> None:
        capital = np.logaddexp(math.log(0.5) + self.log_up, math.log(0.5) + self.log_down)
        keep = capital < math.log(1 / self.alpha)
        any_kept = keep.any(axis=-1)
        first = np.where(any_kept, np.argmax(keep, axis=-1), 0)
        last = np.where(any_kept, self.m.size - 1 - np.argmax(keep[..., ::-1], axis=-1), self.m.size - 1)
        step = self.m[1] - self.m[0]
        # widen by one grid step: a mean between two grid points is covered when either neighbour is
        lo_grid = np.maximum(self.m[first] - step, 0.0)
        hi_grid = np.minimum(self.m[last] + step, 1.0)
        # the values drawn bound the mean whatever the rest are: [Σx / N, (Σx + N − t) / N]
        lo_known = self.total / self.N
        hi_known = (self.total + self.N - self.t) / self.N
        self.lo = np.maximum(np.maximum(self.lo, lo_grid), lo_known)
        self.hi = np.minimum(np.minimum(self.hi, hi_grid), hi_known)
        if self.t == self.N:  # every value drawn: the mean is known exactly
            self.lo = self.hi = self.total / self.N
        crossed = self.lo > self.hi  # possible only where the sequence has failed (probability ≤ α)
        if np.any(crossed):
            mid = (self.lo + self.hi) / 2
            self.lo, self.hi = np.where(crossed, mid, self.lo), np.where(crossed, mid, self.hi)

    @property
    def interval(self) -> tuple[float, float]:
        return float(self.lo), float(self.hi)
