import contextlib
import io

import numpy as np
import prdc as prdc_package
import pytest
import torch
from sklearn.neighbors import NearestNeighbors
from torch import nn

from components.evaluation.prdc import PRDC, knn, prdc, prdc_per_k, precision_recall

KEYS = ("precision", "recall", "density", "coverage")


def _reference(real, fake, k):
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the sample counts
        return {key: float(v) for key, v in prdc_package.compute_prdc(real, fake, k).items()}


def _gaussians(n, m, d, *, shift=0.3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), (rng.standard_normal((m, d)) + shift).astype(dtype)


@pytest.mark.parametrize(
    "n,m,d,k",
    [(400, 300, 16, 5), (250, 600, 64, 3), (500, 500, 2, 1), (300, 300, 128, 10), (300, 300, 1000, 5)],
)
def test_matches_the_prdc_package(n, m, d, k):
    real, fake = _gaussians(n, m, d)
    ours = prdc(real, fake, nearest_k=k, chunk_size=97)  # a chunk size that does not divide N
    ref = _reference(real, fake, k)
    for key in KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


def test_matches_the_prdc_package_on_float32_and_torch_inputs():
    real, fake = _gaussians(500, 400, 32, dtype=np.float32)
    ref = _reference(real, fake, 5)
    ours = prdc(torch.from_numpy(real), torch.from_numpy(fake), nearest_k=5)
    for key in KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


def test_chunk_size_does_not_change_the_result():
    real, fake = _gaussians(300, 200, 8)
    assert prdc(real, fake, chunk_size=7) == prdc(real, fake, chunk_size=10_000)


def test_identical_sets_are_fully_precise_and_covered():
    real, _ = _gaussians(300, 1, 8)
    ours = prdc(real, real.copy(), nearest_k=5)
    assert ours["precision"] == ours["recall"] == ours["coverage"] == 1.0
    assert ours["density"] == pytest.approx(_reference(real, real.copy(), 5)["density"], abs=1e-6)


def test_identical_points_give_zero_like_the_package():
    """Every radius is 0 and the comparison is strict, so nothing lies inside any ball."""
    x = np.ones((50, 4))
    assert prdc(x, x.copy()) == {key: 0.0 for key in KEYS}
    assert _reference(x, x.copy(), 5) == {key: 0.0 for key in KEYS}


def test_disjoint_sets_score_zero():
    real, fake = _gaussians(200, 200, 8, shift=100.0)
    assert prdc(real, fake) == {key: 0.0 for key in KEYS}


def test_several_k_in_one_pass_equal_separate_calls():
    real, fake = _gaussians(300, 250, 16)
    both = prdc_per_k(real, fake, ks=(3, 5))
    assert both[3] == prdc(real, fake, nearest_k=3)
    assert both[5] == prdc(real, fake, nearest_k=5)
    assert precision_recall(real, fake) == {"precision": both[3]["precision"], "recall": both[3]["recall"]}


def test_knn_matches_sklearn():
    real, fake = _gaussians(300, 200, 16)
    dist, idx = knn(fake, real, k=4, chunk_size=64)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=4).fit(real).kneighbors(fake)
    np.testing.assert_allclose(dist.numpy(), ref_dist, rtol=1e-10)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)


def test_metric_accumulates_batches_and_uses_k3_and_k5():
    real, fake = _gaussians(300, 240, 16, dtype=np.float32)
    metric = PRDC()
    for r, f in zip(np.array_split(real, 4), np.array_split(fake, 4), strict=True):
        metric.update(torch.from_numpy(r), real=True)
        metric.update(torch.from_numpy(f), real=False)
    out = metric.compute()
    pr, dc = prdc(real, fake, nearest_k=3), prdc(real, fake, nearest_k=5)
    expected = {"precision": pr["precision"], "recall": pr["recall"]}
    expected |= {"density": dc["density"], "coverage": dc["coverage"]}
    assert {k: v.item() for k, v in out.items()} == pytest.approx(expected)
    metric.reset()
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match="^PRDC.compute: expected both real and fake features"),
    ):
        metric.compute()


def test_metric_applies_the_feature_module():
    torch.manual_seed(0)
    images_real, images_fake = torch.rand(80, 1, 4, 4), torch.rand(60, 1, 4, 4) * 0.5
    feature = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
    metric = PRDC(feature=feature, pr_k=5, dc_k=5)
    metric.update(images_real, real=True)
    metric.update(images_fake, real=False)
    with torch.no_grad():
        expected = prdc(feature(images_real), feature(images_fake), nearest_k=5)
    assert {k: v.item() for k, v in metric.compute().items()} == pytest.approx(expected)


def test_bad_inputs_raise():
    real, fake = _gaussians(5, 5, 3)
    with pytest.raises(ValueError, match="^prdc_per_k: expected more than k=5 real samples, got 5"):
        prdc(real, fake)
    with pytest.raises(ValueError, match="^prdc_per_k: expected feature sets of one size"):
        prdc(real, fake[:, :2], nearest_k=2)
    with pytest.raises(ValueError, match=r"^prdc_per_k: expected features of shape \(N, D\)"):
        prdc(real[0], fake, nearest_k=2)


def test_float32_features_far_from_the_origin_still_match():
    """Centring before the ‖a‖² − 2a·b + ‖b‖² expansion keeps float32 exact enough at norms ≫ distances."""
    real, fake = _gaussians(400, 300, 16, dtype=np.float32)
    real, fake = real + 1000.0, fake + 1000.0
    ref = _reference(real, fake, 5)
    ours = prdc(real, fake)
    for key in KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


def _lattice(n, m, d, *, seed=0, levels=6):
    """Integer features in a small box: many pairs tie exactly at a k-NN radius, and points repeat."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, levels, (n, d)).astype(np.float64), rng.integers(1, levels + 1, (m, d)).astype(np.float64)


def _tied_cases():
    real, fake = _gaussians(300, 250, 8, seed=3)
    quantised = np.round(real * 4) / 4, np.round(fake * 4) / 4  # multiples of 1/4: exact in binary
    grid = np.stack(np.meshgrid(np.arange(15), np.arange(15)), axis=-1).reshape(-1, 2).astype(np.float64)
    points = _lattice(60, 50, 3, seed=4)
    repeated = np.repeat(points[0], [1, 2, 3, 7] * 15, axis=0), np.repeat(points[1], [1, 4] * 25, axis=0)
    return {
        "integers 3-D": _lattice(300, 250, 3, seed=1),
        "integers 4-D": _lattice(300, 250, 4, seed=2),
        "integers 6-D": _lattice(300, 250, 6, seed=0, levels=3),
        "quantised 8-D": quantised,
        "grid vs shifted grid": (grid, grid[::3] + [1.0, 0.0]),
        "repeated points": repeated,
    }


TIED = _tied_cases()


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("case", list(TIED))
def test_exact_ties_are_decided_as_the_package_decides_them(case, k):
    """Lattice and quantised features tie exactly at the radii (arXiv 1904.06991, 2002.09797): pairs near a
    radius are decided on the direct distance with prdc's strict <, so the values equal prdc's (to 1e-12)."""
    real, fake = TIED[case]
    ref = _reference(real, fake, k)
    for chunk_size in (None, 7):
        ours = prdc(real, fake, nearest_k=k, chunk_size=chunk_size)
        for key in KEYS:
            assert ours[key] == pytest.approx(ref[key], abs=1e-12), (key, chunk_size)


def test_exact_ties_on_float32_features_match_the_package():
    """Float32 integers: the float32 expansion is decided near the radii on float64 direct distances."""
    real, fake = (a.astype(np.float32) for a in _lattice(400, 300, 4, seed=5))
    for k in (2, 5):
        ref, ours = _reference(real, fake, k), prdc(torch.from_numpy(real), torch.from_numpy(fake), nearest_k=k)
        for key in KEYS:
            assert ours[key] == pytest.approx(ref[key], abs=1e-12), (key, k)


@pytest.mark.parametrize("shift", [1e4, -37.0])
@pytest.mark.parametrize("case", ["integers 4-D", "quantised 8-D", "repeated points"])
def test_shifting_both_sets_changes_nothing(case, shift):
    """Distances, hence PRDC, are translation invariant; with exact ties the computed values must be too."""
    real, fake = TIED[case]
    base = prdc_per_k(real, fake, ks=(1, 3, 5))
    assert prdc_per_k(real + shift, fake + shift, ks=(1, 3, 5)) == base
    for k in (1, 3, 5):
        assert base[k] == pytest.approx(_reference(real + shift, fake + shift, k), abs=1e-12)
