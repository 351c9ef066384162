import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from components.data.mixtures import GRID25_MEANS, GRID25_SIGMA, RING8_MEANS, RING8_SIGMA
from components.evaluation.modes import mode_metrics


def _planted(modes, per_mode, means, sigma, offset_sigmas=0.5):
    """``per_mode`` points around each listed mode, each ``offset_sigmas`` σ from its mean."""
    rng = np.random.default_rng(0)
    pts = []
    for m, n in zip(modes, per_mode, strict=True):
        angle = rng.uniform(0, 2 * math.pi, n)
        pts.append(means[m] + offset_sigmas * sigma * np.stack([np.cos(angle), np.sin(angle)], 1))
    return np.concatenate(pts)


def test_twenty_of_twentyfive_modes_and_three_off_manifold_points():
    hit = list(range(20))
    x = _planted(hit, [4] * 20, GRID25_MEANS, GRID25_SIGMA)
    off = np.array([[1.0, 1.0], [-3.0, 1.0], [3.0, -3.0]])  # √2 from every mean: far beyond 3σ
    m = mode_metrics(np.concatenate([x, off]), GRID25_MEANS, GRID25_SIGMA)
    assert m["modes_captured"] == 20
    assert m["pct_high_quality"] == pytest.approx(100 * 80 / 83)
    assert m["per_mode_counts"] == [4] * 20 + [0] * 5
    assert m["reverse_kl"] == pytest.approx(math.log(25) - math.log(20))  # uniform over 20 of 25
    assert m["num_modes"] == 25 and m["num_samples"] == 83


def test_uniform_over_all_modes_gives_zero_reverse_kl():
    m = mode_metrics(_planted(range(8), [5] * 8, RING8_MEANS, RING8_SIGMA), RING8_MEANS, RING8_SIGMA)
    assert m["modes_captured"] == 8 and m["pct_high_quality"] == 100.0
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_total_collapse_gives_log_k():
    m = mode_metrics(_planted([3], [50], RING8_MEANS, RING8_SIGMA), RING8_MEANS, RING8_SIGMA)
    assert m["modes_captured"] == 1
    assert m["reverse_kl"] == pytest.approx(math.log(8))


def test_uneven_histogram_matches_scipy_kl_to_uniform():
    counts = [7, 1, 0, 2, 3, 0, 5, 2]
    x = _planted(range(8), counts, RING8_MEANS, RING8_SIGMA)
    m = mode_metrics(torch.from_numpy(x), torch.from_numpy(RING8_MEANS), RING8_SIGMA)
    assert m["per_mode_counts"] == counts and m["modes_captured"] == 6
    assert m["reverse_kl"] == pytest.approx(entropy(counts, np.full(8, 1 / 8)))


def test_no_high_quality_sample_is_defined_as_log_k():
    m = mode_metrics(np.array([[0.0, 0.0], [5.0, 5.0]]), RING8_MEANS, RING8_SIGMA)
    assert m["modes_captured"] == 0 and m["pct_high_quality"] == 0.0
    assert m["reverse_kl"] == pytest.approx(math.log(8))


def test_high_quality_radius_is_hq_sigmas():
    inside = _planted([0], [1], RING8_MEANS, RING8_SIGMA, offset_sigmas=2.9)
    outside = _planted([0], [1], RING8_MEANS, RING8_SIGMA, offset_sigmas=3.1)
    assert mode_metrics(inside, RING8_MEANS, RING8_SIGMA)["modes_captured"] == 1
    assert mode_metrics(outside, RING8_MEANS, RING8_SIGMA)["modes_captured"] == 0
    assert mode_metrics(outside, RING8_MEANS, RING8_SIGMA, hq_sigmas=4.0)["modes_captured"] == 1


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"^mode_metrics: expected samples \(N, D\) and means \(K, D\)"):
        mode_metrics(np.zeros((4, 3)), RING8_MEANS, RING8_SIGMA)
