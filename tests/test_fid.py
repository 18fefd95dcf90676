import numpy as np
import pytest
import torch
from torchmetrics.image.fid import _compute_fid

from spqr_fast.scoring.fid import feature_stats, frechet_distance


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """torchmetrics' FID formula on the same features (float64)."""
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    t = lambda x: torch.from_numpy(np.asarray(x, dtype=np.float64))  # noqa: E731
    return float(_compute_fid(t(mu1), t(s1), t(mu2), t(s2)))


@pytest.mark.parametrize("n1,n2,d", [(30, 40, 64), (200, 150, 32), (12, 9, 2048)])
def test_fid_agrees_with_torchmetrics(n1, n2, d):
    rng = np.random.default_rng(n1 + d)
    a = rng.normal(0, 1, (n1, d)) @ rng.normal(0, 0.3, (d, d))
    b = rng.normal(0.2, 1.1, (n2, d)) @ rng.normal(0, 0.3, (d, d))
    ours = frechet_distance(a, b)
    assert ours == pytest.approx(_reference_fid(a, b), rel=1e-6, abs=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 16)), rng.normal(1, 2, size=(60, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_fid_rejects_bad_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_nan_features_are_named_not_a_linalg_error():
    import numpy as np
    import pytest

    from spqr_fast.scoring.fid import frechet_distance

    a = np.random.default_rng(0).normal(size=(5, 3))
    b = a.copy()
    b[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        frechet_distance(a, b)
