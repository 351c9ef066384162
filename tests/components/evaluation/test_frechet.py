import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from components.evaluation.frechet import FrechetMoments, fid_ci, frechet_distance, frechet_from_moments


class _Identity(nn.Module):
    """Features in, features out: torchmetrics' FID on given features."""

    num_features = 16

    def forward(self, x):
        return x


def _gauss(n, d, shift=0.0, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


def test_equals_torchmetrics_fid_on_the_same_features():
    real, fake = _gauss(500, 16, seed=1).float(), _gauss(800, 16, shift=0.3, scale=1.2, seed=2).float()
    metric = FrechetInceptionDistance(feature=_Identity(), reset_real_features=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected = float(metric.compute())
    assert frechet_distance(real, fake) == pytest.approx(expected, abs=1e-3)
    assert fid_ci(real.numpy(), fake.numpy(), n_boot=20).estimate == pytest.approx(expected, abs=1e-3)


def test_identical_sets_give_zero_and_an_interval_near_zero():
    a = _gauss(2000, 16)
    ci = fid_ci(a, a, n_boot=100, seed=0)
    assert ci.estimate == pytest.approx(0.0, abs=1e-9)
    assert ci.lo == 0.0 and 0.0 < ci.hi < 0.05  # vs FID 4.0 for a shift of 0.5 per dimension below


def test_interval_covers_the_known_distance_and_fresh_redraws():
    # N(0, I) vs N(0.5, I) in 16-D: FID = ‖μ₁ − μ₂‖² = 16 · 0.25 = 4 (equal covariances)
    ci = fid_ci(_gauss(2000, 16, seed=3), _gauss(2000, 16, shift=0.5, seed=4), n_boot=100, seed=0)
    assert ci.lo < 4.0 < ci.hi and ci.hi - ci.lo < 1.0
    # small N, 16-D: FID is biased upwards; the centred interval still covers the mean of new draws
    draws = [frechet_distance(_gauss(300, 16, seed=10 + s), _gauss(300, 16, shift=0.5, seed=50 + s)) for s in range(20)]
    small = fid_ci(_gauss(300, 16, seed=5), _gauss(300, 16, shift=0.5, seed=6), n_boot=100, seed=0)
    assert small.lo < np.mean(draws) < small.hi
    assert small.boot_mean > small.estimate  # resampling with replacement adds the small-N bias again


def test_seeded_and_bad_inputs_raise():
    a, b = _gauss(200, 4, seed=7), _gauss(200, 4, shift=1.0, seed=8)
    assert fid_ci(a, b, n_boot=30, seed=1) == fid_ci(a, b, n_boot=30, seed=1)
    with pytest.raises(ValueError, match="^frechet_distance: expected feature sets of one width"):
        frechet_distance(a, b[:, :3])
    with pytest.raises(ValueError, match=r"^frechet_distance: expected features of shape \(N, D\) with N >= 2"):
        frechet_distance(a[:1], b)


# ----- Fréchet moments: the FID of N features in k parts (the evaluation workers' chunks) equals the one-shot FID


def _reference_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """The FID paper's formula as pytorch-fid writes it: scipy.linalg.sqrtm of Σ₁Σ₂, in float64."""
    from scipy import linalg

    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root.real))


def _in_parts(features: torch.Tensor, sizes: list[int]) -> FrechetMoments:
    merged = FrechetMoments(features.shape[1])
    for part in features.split(sizes):
        m = FrechetMoments(features.shape[1])
        m.update(part)
        merged.merge_state(m.metric_state)  # what the driver does with each worker's chunk
    return merged


@pytest.mark.parametrize("sizes", [[1000], [500, 500], [1, 2, 997], [333, 333, 334], [100] * 10])
def test_fid_of_features_in_k_parts_equals_the_one_shot_fid(sizes):
    real, fake = _gauss(1000, 64, seed=11), _gauss(1200, 64, shift=0.2, scale=1.3, seed=12) + 3.0  # off-centre
    one_shot = frechet_from_moments(FrechetMoments.of(real), FrechetMoments.of(fake))
    parts = frechet_from_moments(_in_parts(real, sizes), FrechetMoments.of(fake))
    assert parts == pytest.approx(one_shot, rel=1e-9)
    # the same value as the two-pass formula, as the paper's scipy.linalg.sqrtm formula, and as torchmetrics
    assert frechet_distance(real, fake) == pytest.approx(one_shot, rel=1e-9)
    assert _reference_fid(real.numpy(), fake.numpy()) == pytest.approx(one_shot, rel=1e-7)
    metric = FrechetInceptionDistance(feature=_Wide(64), reset_real_features=True)  # float64 features in, out
    for part in real.split(sizes):
        metric.update(part, real=True)
    metric.update(fake, real=False)
    assert float(metric.compute()) == pytest.approx(one_shot, rel=1e-9)


def test_moments_merge_as_sums_and_refuse_bad_input():
    a = _gauss(300, 8, seed=13)
    merged = _in_parts(a, [100, 200])
    assert int(merged.n) == 300 and merged.total.dtype == torch.float64
    torch.testing.assert_close(merged.total, a.sum(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(merged.outer, a.T @ a, rtol=1e-12, atol=1e-12)
    mean, cov = merged.mean_cov()
    torch.testing.assert_close(cov, torch.cov(a.T), rtol=1e-10, atol=1e-12)
    other = FrechetMoments(8)
    other.merge_state(merged)  # a Metric instance merges too
    assert frechet_from_moments(other, merged) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"^FrechetMoments.update: expected features of shape \(B, 8\)"):
        FrechetMoments(8).update(a[:, :3])
    with pytest.raises(ValueError, match="^FrechetMoments: expected at least 2 features, got 1"):
        _in_parts(a[:1], [1]).mean_cov()
    with pytest.raises(ValueError, match="^frechet_from_moments: expected moments of one width"):
        frechet_from_moments(merged, FrechetMoments.of(_gauss(10, 4)))


class _Wide(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x
