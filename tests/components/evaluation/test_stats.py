import math

import numpy as np
import pytest
import torch

from components.evaluation.stats import CI, bootstrap_ci


def test_mean_interval_matches_the_normal_approximation():
    x = np.random.default_rng(0).standard_normal(1000)
    ci = bootstrap_ci(np.mean, x, n_boot=1000, seed=0)
    assert isinstance(ci, CI) and ci.estimate == pytest.approx(x.mean())
    assert ci.lo < ci.estimate < ci.hi
    assert ci.hi - ci.lo == pytest.approx(2 * 1.96 * x.std() / math.sqrt(1000), rel=0.15)


def test_seeded_and_alpha_narrows_the_interval():
    x = np.random.default_rng(1).exponential(size=200)
    assert bootstrap_ci(np.median, x, n_boot=200, seed=3) == bootstrap_ci(np.median, x, n_boot=200, seed=3)
    wide = bootstrap_ci(np.median, x, n_boot=400, seed=3, alpha=0.01)
    narrow = bootstrap_ci(np.median, x, n_boot=400, seed=3, alpha=0.5)
    assert wide.hi - wide.lo > narrow.hi - narrow.lo


def test_rows_of_tensors_are_resampled_whole_and_independently():
    a = torch.arange(50, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0])  # rows (i, 2i)
    b = torch.arange(30, dtype=torch.float64)[:, None]

    def fn(x, y):
        assert torch.equal(x[:, 1], 2 * x[:, 0]) and x.shape == (50, 2) and y.shape == (30, 1)
        return x[:, 0].mean() - y.mean()

    ci = bootstrap_ci(fn, a, b, n_boot=100, seed=0)
    assert ci.estimate == pytest.approx(24.5 - 14.5) and ci.lo < ci.estimate < ci.hi


def test_paired_resampling_keeps_pairs_together():
    x = np.arange(100.0)
    ci = bootstrap_ci(lambda u, v: np.mean(u - v), x, x + 1.0, n_boot=50, seed=0, paired=True)
    assert ci.lo == ci.hi == ci.estimate == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="^bootstrap_ci: expected arrays of equal length"):
        bootstrap_ci(np.mean, x, x[:10], paired=True)


def test_vector_statistics_give_vector_intervals():
    x = np.random.default_rng(2).standard_normal((300, 3)) + [0.0, 5.0, -5.0]
    ci = bootstrap_ci(lambda a: a.mean(0), x, n_boot=200, seed=0)
    assert ci.lo.shape == ci.hi.shape == (3,)
    assert np.all(ci.lo < ci.estimate) and np.all(ci.estimate < ci.hi)
    assert ci.to_dict()["estimate"] == pytest.approx(x.mean(0).tolist())


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="^bootstrap_ci: expected 0 < alpha < 1"):
        bootstrap_ci(np.mean, np.ones(3), alpha=1.5)
    with pytest.raises(ValueError, match="^bootstrap_ci: expected non-empty arrays"):
        bootstrap_ci(np.mean, np.ones(0))


def test_centred_interval_for_an_unbiased_statistic_matches_the_percentile_one():
    x = np.random.default_rng(4).standard_normal(500)
    pct = bootstrap_ci(np.mean, x, n_boot=500, seed=0)
    cen = bootstrap_ci(np.mean, x, n_boot=500, seed=0, method="centred")
    assert cen.estimate == pct.estimate and cen.boot_mean == pytest.approx(x.mean(), abs=0.01)
    assert cen.lo == pytest.approx(pct.lo, abs=0.02) and cen.hi == pytest.approx(pct.hi, abs=0.02)
    assert cen.hi - cen.lo == pytest.approx(pct.hi - pct.lo)  # the same spread, reflected about the mean


def test_centred_interval_removes_a_resampling_bias():
    # max is biased low under resampling (a resample rarely holds the maximum): percentile misses it
    x = np.random.default_rng(5).uniform(size=300)
    pct = bootstrap_ci(np.max, x, n_boot=300, seed=0)
    cen = bootstrap_ci(np.max, x, n_boot=300, seed=0, method="centred")
    assert pct.hi <= pct.estimate and cen.lo <= cen.estimate <= cen.hi
    with pytest.raises(ValueError, match="^bootstrap_ci: expected method 'percentile' or 'centred'"):
        bootstrap_ci(np.max, x, method="basic")
