import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from components.evaluation.frechet import fid_ci, frechet_distance


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
