"""The SimCLR encoder (components.evaluation.simclr): NT-Xent against a direct transcription of the paper's
equation, views that are reproducible and reduce to the identity with every augmentation off, planted probe
answers, and a tiny training run whose weights survive a save/load round trip with their sha256."""

import math

import numpy as np
import pytest
import torch

from components.config import SimCLRConfig
from components.evaluation.simclr import (
    SimCLREncoder,
    augment,
    has_encoder,
    knn_accuracy,
    linear_probe_accuracy,
    load_encoder,
    nt_xent,
    save_encoder,
    train_simclr,
)
from components.io import sha256_file


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """arXiv 2002.05709 eq. 1 and Alg. 1, term by term: z_{2k-1} = z1[k], z_{2k} = z2[k]."""
    z = [v for pair in zip(z1.double(), z2.double(), strict=True) for v in pair]  # interleaved, 2N vectors

    def sim(u, v):
        return float(u @ v / (u.norm() * v.norm()))

    def ell(i, j):
        den = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(len(z)) if k != i)
        return -math.log(math.exp(sim(z[i], z[j]) / tau) / den)

    n = len(z1)
    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize(("n", "d", "tau"), [(2, 3, 0.5), (5, 8, 0.1), (7, 4, 1.0)])
def test_nt_xent_matches_the_papers_equation(n, d, tau):
    gen = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    assert float(nt_xent(z1, z2, tau)) == pytest.approx(naive_nt_xent(z1, z2, tau), rel=1e-5)


def test_nt_xent_is_low_for_matched_pairs_and_ignores_scale():
    z = torch.eye(4)  # 4 orthogonal directions: each view's positive is its twin, the negatives are orthogonal
    matched = float(nt_xent(z, 3 * z, 0.1))
    assert matched == pytest.approx(math.log(1 + 6 * math.exp(-10)), abs=1e-6)  # own twin at cos 1, six at cos 0
    shuffled = float(nt_xent(z, z.roll(1, dims=0), 0.1))
    assert shuffled > 9  # the positive is orthogonal, another view is identical


def test_views_are_seeded_in_range_and_identity_without_augmentation():
    x = torch.rand(16, 1, 28, 28)
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    c = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, c)
    assert a.min() >= 0 and a.max() <= 1
    off = dict(crop_scale=(1.0, 1.0), ratio=(1.0, 1.0), max_rotate_deg=0.0, max_shear=0.0, max_shift=0.0, cutout=0.0)
    small = torch.rand(4, 1, 8, 8)
    assert torch.allclose(augment(small, torch.Generator().manual_seed(0), **off), small, atol=1e-5)


def test_cutout_zeroes_a_square_of_a_quarter_of_the_side():
    x = torch.ones(8, 1, 8, 8)
    off = dict(crop_scale=(1.0, 1.0), ratio=(1.0, 1.0), max_rotate_deg=0.0, max_shear=0.0, max_shift=0.0)
    out = augment(x, torch.Generator().manual_seed(0), cutout=0.25, cutout_p=1.0, **off)
    assert ((out < 0.5).flatten(1).sum(1) == 4).all()  # a 2×2 square in every image


def test_probes_find_planted_classes():
    gen = torch.Generator().manual_seed(0)
    centres = 5 * torch.randn(3, 6, generator=gen)
    y = torch.arange(300) % 3
    f = centres[y] + 0.1 * torch.randn(300, 6, generator=gen)
    assert knn_accuracy(f[:200], y[:200], f[200:], y[200:]) == 1.0
    assert linear_probe_accuracy(f[:200], y[:200], f[200:], y[200:]) == 1.0
    noise = torch.randn(300, 6, generator=gen)  # features that know nothing: near chance (1/3)
    assert knn_accuracy(noise[:200], y[:200], noise[200:], y[200:]) < 0.6


def test_encoder_maps_images_to_features_for_torchmetrics():
    enc = SimCLREncoder(channels=3, width=4, num_features=10).eval()
    assert enc(torch.rand(5, 3, 28, 28)).shape == (5, 10) and enc.num_features == 10


def test_tiny_training_run_reports_and_round_trips(digits_root, tmp_path):
    from components.data import load_split

    torch.set_num_threads(1)
    tr, te = load_split(digits_root, "digits", "train"), load_split(digits_root, "digits", "test")
    cfg = SimCLRConfig(epochs=2, batch_size=64, width=4, feature_dim=16, seed=0)
    model, rep = train_simclr((tr[0][:256], tr[1][:256]), te, cfg)
    assert rep["steps"] == 8 and len(rep["loss_history"]) == 2 and np.isfinite(rep["final_loss"])
    assert rep["final_loss"] < rep["loss_chance"] + 0.1  # log(2B - 1): where a blind encoder sits
    assert 0.1 <= rep["knn_accuracy"] <= 1 and 0 <= rep["linear_probe_accuracy"] <= 1 and rep["n_test"] == len(te[1])
    meta = save_encoder(tmp_path / "simclr", model, {"dataset": "digits", **rep})
    assert has_encoder(tmp_path / "simclr") and not has_encoder(tmp_path)
    assert meta["sha256"] == sha256_file(tmp_path / "simclr" / "encoder.safetensors") and meta["feature_dim"] == 16
    loaded = load_encoder(tmp_path / "simclr")
    x = torch.from_numpy(te[0][:32])
    assert torch.equal(loaded.features(x), model.eval()(x)) and loaded.meta["sha256"] == meta["sha256"]
    unlabelled = train_simclr((tr[0][:128], -np.ones(128, np.int64)), te, cfg.model_copy(update={"epochs": 1}))[1]
    assert "knn_accuracy" not in unlabelled  # no labels, no probe: still an encoder
