import math

import numpy as np
import pytest

from components.data import get_source, prepare_dataset
from components.data.mixtures import (
    GRID25_MEANS,
    GRID25_SIGMA,
    RING8_MEANS,
    RING8_SIGMA,
    load_grid25,
    load_ring8,
    mixture,
)
from components.evaluation.modes import mode_metrics


def test_ring_means_are_eight_distinct_points_on_the_unit_circle():
    assert RING8_MEANS.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(RING8_MEANS, axis=1), 1.0)
    np.testing.assert_allclose(RING8_MEANS[0], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(RING8_MEANS[2], [0.0, 1.0], atol=1e-12)
    d = np.linalg.norm(RING8_MEANS[:, None] - RING8_MEANS[None], axis=-1) + np.eye(8) * 10
    np.testing.assert_allclose(d.min(), 2 * math.sin(math.pi / 8))  # neighbours 45° apart, none doubled
    assert RING8_SIGMA == 0.01


def test_grid_means_are_the_5x5_lattice():
    assert GRID25_MEANS.shape == (25, 2)
    assert {tuple(m) for m in GRID25_MEANS} == {(x, y) for x in range(-4, 5, 2) for y in range(-4, 5, 2)}
    assert GRID25_SIGMA == 0.05


@pytest.mark.parametrize("loader,k,sigma", [(load_ring8, 8, 0.01), (load_grid25, 25, 0.05)])
def test_loader_returns_balanced_labelled_points(loader, k, sigma):
    raw = loader(n_samples=100 * k, seed=3, path="ignored", anything_else=1)
    assert raw.kind == "points"
    assert raw.x.shape == (100 * k, 2) and raw.x.dtype == np.float32
    assert raw.y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(raw.y, minlength=k), np.full(k, 100))
    assert raw.class_names == tuple(f"m{i}" for i in range(k))
    assert raw.extras["sigma"] == sigma and len(raw.extras["means"]) == k
    offsets = raw.x - np.asarray(raw.extras["means"])[raw.y]
    np.testing.assert_allclose(offsets.std(), sigma, rtol=0.05)
    np.testing.assert_allclose(offsets.mean(0), 0.0, atol=sigma * 0.1)


def test_loader_is_seeded_and_defaults_to_20k():
    a, b, c = load_ring8(seed=0), load_ring8(seed=0), load_ring8(seed=1)
    assert len(a.x) == 20_000
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_true_samples_score_as_the_protocol_expects():
    """Real mixture samples capture every mode; P(‖z‖ ≤ 3) in 2-D is 1 − e^{−9/2} = 98.89 %."""
    mix = mixture("grid25")
    x, _ = mix.sample(20_000, seed=0)
    m = mode_metrics(x, mix.means, mix.sigma)
    assert m["modes_captured"] == 25
    assert abs(m["pct_high_quality"] - 100 * (1 - math.exp(-4.5))) < 0.3
    assert m["reverse_kl"] < 1e-3


def test_registered_source_prepares(tmp_path):
    raw = get_source("ring8")(path=None, n_samples=400, seed=0)
    manifest = prepare_dataset("ring8", raw, tmp_path, val=0.1, test=0.1, seed=0)
    assert manifest["spec"]["kind"] == "points"
    assert manifest["spec"]["extras"]["means"] == RING8_MEANS.tolist()
    assert manifest["splits"]["train"]["class_counts"] == [40] * 8


def test_unknown_mixture_and_too_few_samples_raise():
    with pytest.raises(ValueError, match="Expected a mixture name"):
        mixture("ring9")
    with pytest.raises(ValueError, match="Expected n_samples >= 25"):
        load_grid25(n_samples=10)
