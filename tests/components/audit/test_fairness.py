import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from components.audit.fairness import amplification, bootstrap_shares, group_gap, skew
from components.evaluation.shares import KL_EPS, fairness_discrepancy, shares


def test_shares_include_classes_that_never_appear():
    np.testing.assert_allclose(shares([0, 0, 2], 4), [2 / 3, 0, 1 / 3, 0])
    np.testing.assert_allclose(shares(torch.tensor([1, 1]), 3), [0, 1, 0])
    np.testing.assert_array_equal(shares([], 2), [0, 0])


def test_shares_reject_labels_out_of_range():
    with pytest.raises(ValueError, match=r"^shares: expected labels in \[0, 3\), got values in \[0, 3\]"):
        shares([0, 3], 3)
    with pytest.raises(ValueError, match=r"^shares: expected labels in \[0, 2\)"):
        shares([-1, 0], 2)


def test_discrepancy_by_hand_and_against_scipy():
    p, q = [0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]
    fd = fairness_discrepancy(p, q)
    assert fd["l2"] == pytest.approx(math.sqrt((1 / 6) ** 2 + (1 / 30) ** 2 + (2 / 15) ** 2))
    assert fd["l1"] == pytest.approx(1 / 6 + 1 / 30 + 2 / 15)
    assert fd["kl"] == pytest.approx(entropy(p, q), rel=1e-8)
    assert fd["kl"] == pytest.approx(sum(a * math.log(a / b) for a, b in zip(p, q, strict=True)), rel=1e-8)
    assert fairness_discrepancy(q, q) == pytest.approx({"l2": 0.0, "l1": 0.0, "kl": 0.0}, abs=1e-9)


def test_kl_is_finite_when_the_reference_misses_a_class():
    fd = fairness_discrepancy([0.5, 0.5], [1.0, 0.0])
    assert math.isfinite(fd["kl"])
    assert fd["kl"] == pytest.approx(entropy([0.5, 0.5], [1 + KL_EPS, KL_EPS]))
    assert fd["kl"] > 10


def test_discrepancy_rejects_non_distributions():
    with pytest.raises(ValueError, match="^fairness_discrepancy: expected p to be a probability vector"):
        fairness_discrepancy([0.5, 0.6], [0.5, 0.5])
    with pytest.raises(ValueError, match="^fairness_discrepancy: expected p and q of the same length"):
        fairness_discrepancy([1.0], [0.5, 0.5])


def test_skew_and_amplification():
    assert skew([0.25] * 4) == pytest.approx(0.0)
    assert skew([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.75)
    assert skew([0.5, 0.3, 0.2]) == pytest.approx(0.5 * (1 / 6 + 1 / 30 + 2 / 15))
    # training 60/40 (skew 0.1), generated 90/10 (skew 0.4): the model amplifies the imbalance by 0.3
    assert amplification([0.9, 0.1], [0.6, 0.4]) == pytest.approx(0.3)
    assert amplification([0.5, 0.5], [0.6, 0.4]) == pytest.approx(-0.1)


def test_bootstrap_shares_intervals():
    labels = np.repeat([0, 1, 2], [200, 200, 0])
    out = bootstrap_shares(labels, 4, n_boot=500, seed=0, alpha=0.05)
    np.testing.assert_allclose(out["shares"], [0.5, 0.5, 0.0, 0.0])
    for lo, est, hi in zip(out["lo"], out["shares"], out["hi"], strict=True):
        assert lo <= est <= hi
    width = out["hi"][0] - out["lo"][0]
    assert width == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 400), rel=0.2)  # normal approximation
    assert out["lo"][2] == out["hi"][2] == 0.0  # a class never produced cannot be resampled into existence
    assert bootstrap_shares(labels, 4, n_boot=50, seed=1) == bootstrap_shares(labels, 4, n_boot=50, seed=1)


def test_group_gap():
    gap = group_gap({"a": 10.0, "b": 25.0, "c": float("nan"), "d": 12.5})
    assert gap == {"gap": 15.0, "max_group": "b", "min_group": "a"}
