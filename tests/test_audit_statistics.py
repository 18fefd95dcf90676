"""The audit's statistics with no model: thousands of simulated audits (vectorised) on finite
populations whose mean sits exactly at the threshold. The confidence sequence keeps the
wrong-verdict rate ≤ α however early each audit stops; a fixed-n interval re-checked after every
chunk does not."""

import numpy as np
import pytest

from spqr_fast.audit.sequence import BettingConfidenceSequence

ALPHA = 0.05
RUNS = 1000


def _populations():
    rng = np.random.default_rng(3)
    harm = np.zeros(150)
    harm[:30] = 1.0  # Bernoulli harm, mean 0.2
    paired = np.concatenate([np.full(20, 1.0), np.full(20, -1.0), np.zeros(110)])  # Δh per prompt in [-1, 1]
    tifa = np.clip(rng.beta(5, 2, 150), 0, 1)  # TIFA-like accuracies
    return {"bernoulli harm": harm, "paired change": (paired + 1) / 2, "tifa-like": tifa}


def _simulate(population: np.ndarray, chunk: int, seed: int):
    """Each run draws the population in its own random order, in chunks; returns per-run: whether
    the sequence ever excluded the true mean (a wrong verdict for a threshold at the mean), and
    the final interval."""
    rng = np.random.default_rng(seed)
    n = population.size
    truth = population.mean()
    draws = population[np.argsort(rng.random((RUNS, n)), axis=1)]
    cs = BettingConfidenceSequence(n, ALPHA, grid=401, shape=(RUNS,))
    wrong = np.zeros(RUNS, dtype=bool)
    for start in range(0, n, chunk):
        for t in range(start, min(start + chunk, n)):
            cs.update(draws[:, t])
        wrong |= (cs.lo > truth + 1e-9) | (cs.hi < truth - 1e-9)  # after every chunk (sums differ in the last bits)
    return wrong, cs, truth, draws


@pytest.mark.parametrize("name", ["bernoulli harm", "paired change", "tifa-like"])
def test_wrong_verdicts_stay_below_alpha_and_the_sequence_ends_at_the_exact_mean(name):
    population = _populations()[name]
    wrong, cs, truth, _ = _simulate(population, chunk=5, seed=11)
    monte_carlo = 3 * np.sqrt(ALPHA * (1 - ALPHA) / RUNS)
    assert wrong.mean() <= ALPHA + monte_carlo, f"{name}: wrong-verdict rate {wrong.mean():.3f}"
    # coverage at every step in ≥ 1 − α of the runs is the same event as no wrong verdict
    np.testing.assert_allclose(cs.lo, truth, atol=1e-12)  # every prompt drawn: the exact mean
    np.testing.assert_allclose(cs.hi, truth, atol=1e-12)


def test_a_fixed_n_interval_rechecked_after_each_chunk_errs_far_more_often():
    population = _populations()["bernoulli harm"]
    wrong_sequential, _, truth, draws = _simulate(population, chunk=5, seed=5)
    z = 1.959964
    cumulative = np.cumsum(draws, axis=1)
    wrong_fixed = np.zeros(RUNS, dtype=bool)
    for t in range(10, population.size, 5):  # a Wald interval, as if n were fixed in advance
        mean = cumulative[:, t - 1] / t
        half = z * np.sqrt(np.maximum(mean * (1 - mean), 1e-12) / t)
        wrong_fixed |= (mean - half > truth) | (mean + half < truth)
    assert wrong_fixed.mean() > 3 * ALPHA > wrong_sequential.mean()


def test_the_sequence_narrows_and_clear_cases_decide_early():
    population = np.zeros(200)
    population[:20] = 1.0  # mean 0.1 against a threshold of 0.4
    _, cs_mid, _, _ = _simulate(population, chunk=10, seed=2)
    rng = np.random.default_rng(1)
    order = population[rng.permutation(200)]
    cs = BettingConfidenceSequence(200, ALPHA)
    decided_at = None
    widths = []
    for t, x in enumerate(order, 1):
        cs.update(x)
        widths.append(cs.hi - cs.lo)
        if decided_at is None and cs.hi < 0.4:
            decided_at = t
    assert decided_at is not None and decided_at <= 30  # 15% of the population
    assert all(b <= a + 1e-12 for a, b in zip(widths, widths[1:]))  # never widens


def test_bad_values_are_refused():
    cs = BettingConfidenceSequence(3, ALPHA)
    with pytest.raises(ValueError):
        cs.update(1.5)
    with pytest.raises(ValueError):
        cs.update(float("nan"))
    for _ in range(3):
        cs.update(0.5)
    with pytest.raises(ValueError, match="every value"):
        cs.update(0.5)
