import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu, norm
from sklearn.neighbors import NearestNeighbors

from components.evaluation.memorization import (
    _zu,
    authenticity,
    ct_statistic,
    memorization_report,
    nn_distances,
    nn_ratio_memorized,
    text_novelty,
)


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    train, test = rng.standard_normal((1000, 8)), rng.standard_normal((500, 8))
    copies = train[rng.choice(1000, 500, replace=False)] + 1e-3 * rng.standard_normal((500, 8))
    fresh = rng.standard_normal((500, 8))
    return train, test, copies, fresh


def test_planted_copies_are_flagged(sets):
    train, test, copies, _ = sets
    r = memorization_report(train, test, copies, seed=0)
    assert r["c_t"] < -8  # C_T ≪ 0: generated samples sit closer to training points than test samples do
    assert r["c_t_cells_used"] == 5
    assert r["nn_ratio_memorized"] > 0.95
    assert r["authenticity"] < 0.05
    assert r["nn_train_median"] < 0.01 * r["test_nn_train_median"]
    assert r["closer_to_train_share"] == 1.0


def test_fresh_samples_are_not_flagged(sets):
    train, test, _, fresh = sets
    r = memorization_report(train, test, fresh, seed=0)
    assert abs(r["c_t"]) < 2.5  # a sample from the data distribution behaves like the test set
    assert r["nn_ratio_memorized"] < 0.02  # P(d1/d2 < 1/3) ≈ (1/3)^8 for a Poisson process in 8-D
    assert r["authenticity"] > 0.4
    assert r["nn_train_median"] == pytest.approx(r["test_nn_train_median"], rel=0.1)


def test_underfitting_gives_large_positive_ct(sets):
    train, test, _, fresh = sets
    assert ct_statistic(train, test, 3.0 * fresh, seed=0)["c_t"] > 5


def test_zu_is_the_normal_approximation_of_scipys_one_sided_test():
    rng = np.random.default_rng(1)
    lq, lp = rng.exponential(1.0, 80), rng.exponential(1.3, 120)
    p = mannwhitneyu(lq, lp, alternative="less", method="asymptotic", use_continuity=True).pvalue
    assert norm.cdf(_zu(lq, lp)) == pytest.approx(p, rel=1e-9)


def test_one_cell_ct_is_the_global_z_score(sets):
    train, test, _, fresh = sets
    nn = NearestNeighbors(n_neighbors=1).fit(train)
    lq, lp = nn.kneighbors(fresh)[0][:, 0], nn.kneighbors(test)[0][:, 0]
    u = mannwhitneyu(lq, lp).statistic
    m, n = len(lq), len(lp)
    expected = (u - (m * n / 2 - 0.5)) / math.sqrt(m * n * (m + n + 1) / 12)
    assert ct_statistic(train, test, fresh, n_cells=1)["c_t"] == pytest.approx(expected)


def test_ct_skips_cells_with_too_few_generated_samples():
    rng = np.random.default_rng(2)
    train = np.concatenate([rng.normal(-10, 1, (300, 2)), rng.normal(10, 1, (300, 2))])
    test = np.concatenate([rng.normal(-10, 1, (100, 2)), rng.normal(10, 1, (100, 2))])
    fake = rng.normal(10, 1, (100, 2))  # every generated sample falls in one of the two cells
    r = ct_statistic(train, test, fake, n_cells=2, seed=0)
    assert r["cells_used"] == 1 and sum(math.isnan(z) for z in r["z"]) == 1
    assert r["c_t"] == pytest.approx(np.nanmax(r["z"]))


def test_authenticity_by_hand():
    train = np.array([[0.0], [1.0], [3.0]])  # nearest-neighbour distances 1, 1, 2
    fake = np.array([[0.1], [2.9], [6.0], [-0.5]])  # 0.1 < 1, 0.1 < 2, 3 > 2, 0.5 < 1
    assert authenticity(fake, train) == pytest.approx(1 / 4)


def test_nn_ratio_by_hand():
    train = np.array([[0.0], [1.0], [10.0], [10.0]])
    fake = np.array([[0.2], [0.5], [10.0], [4.0]])  # 0.2/0.8 < 1/3; 0.5/0.5; exact copy of a duplicate; 3/4
    np.testing.assert_array_equal(nn_ratio_memorized(fake, train), [True, False, True, False])


def test_images_are_flattened_and_torch_is_accepted():
    torch.manual_seed(0)
    imgs, ref = torch.rand(20, 1, 4, 4), torch.rand(30, 1, 4, 4)
    d = nn_distances(imgs, ref, k=2)
    expected = torch.cdist(imgs.flatten(1).double(), ref.flatten(1).double()).topk(2, largest=False).values
    np.testing.assert_allclose(d, expected.numpy(), rtol=1e-9)


def test_text_novelty():
    out = text_novelty(["ann", "bob", "cy", "dee"], train=["ann", "zed"], test=["bob", "ann"])
    assert out == {"in_train": 0.25, "in_test": 0.25, "new": 0.5}


def test_bad_inputs_raise(sets):
    train, test, _, fresh = sets
    with pytest.raises(ValueError, match="^ct_statistic: expected 1 <= n_cells"):
        ct_statistic(train[:3], test, fresh, n_cells=5)
    with pytest.raises(ValueError, match=r"^nn_distances: expected a non-empty batch"):
        nn_distances(np.zeros((0, 3)), train)
