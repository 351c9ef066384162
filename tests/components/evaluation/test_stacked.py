"""Stacked MNIST (docs/protocols.md §2) with planted answers: a fake classifier reads each channel's digit from
its brightness, so the modes of a constructed set are known exactly."""

import math

import numpy as np
import pytest
import torch

from components.evaluation.modes import kl_to_uniform
from components.evaluation.stacked import count_stacked_modes, make_stacked, stacked_modes


class BrightnessClassifier:
    """A "digit classifier" for planted images: a channel filled with d / 10 is digit d."""

    def predict(self, x):
        assert x.ndim == 4 and x.shape[1] == 1  # one channel at a time, as a real MNIST classifier
        return (x.mean(dim=(1, 2, 3)) * 10).round().long()


def planted(modes) -> torch.Tensor:
    """(N, 3, 4, 4) images whose channels spell each mode's three digits."""
    modes = np.asarray(modes)
    digits = np.stack([modes // 100, modes // 10 % 10, modes % 10], axis=1)  # (N, 3)
    return torch.from_numpy(digits / 10).float()[:, :, None, None].expand(-1, -1, 4, 4).contiguous()


def test_a_set_with_37_distinct_modes_covers_37():
    rng = np.random.default_rng(0)
    chosen = rng.choice(1000, 37, replace=False)
    modes = rng.choice(chosen, 500)
    modes[:37] = chosen  # every chosen mode at least once
    r = count_stacked_modes(planted(modes), BrightnessClassifier())
    assert r["modes"] == 37 and r["n_samples"] == 500 and sum(r["histogram"]) == 500
    assert np.array_equal(stacked_modes(planted(modes), BrightnessClassifier()), modes)


def test_kl_to_uniform_by_hand():
    assert count_stacked_modes(planted(np.arange(1000)), BrightnessClassifier())["kl"] == pytest.approx(0, abs=1e-12)
    one = count_stacked_modes(planted([421] * 50), BrightnessClassifier())
    assert one["modes"] == 1 and one["kl"] == pytest.approx(math.log(1000)) == one["kl_max"]  # 6.9078
    # two modes, 3:1 -> log 1000 - H(3/4, 1/4): the direction is KL(p̂ ‖ U), never KL(U ‖ p̂) (infinite here)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    r = count_stacked_modes(planted([5] * 30 + [999] * 10), BrightnessClassifier())
    assert r["modes"] == 2 and r["kl"] == pytest.approx(math.log(1000) - h)
    # uniform over 500 modes: log 1000 - log 500 = log 2
    assert kl_to_uniform(np.r_[np.full(500, 3), np.zeros(500)]) == pytest.approx(math.log(2))


def test_make_stacked_draws_three_independent_digits():
    digits = np.repeat(np.arange(10), 20)  # 200 single "digits" of brightness d / 10
    images = np.broadcast_to((digits / 10)[:, None, None, None], (200, 1, 4, 4)).astype(np.float32)
    x, modes = make_stacked(images, digits, 5000, seed=0)
    assert x.shape == (5000, 3, 4, 4) and x.dtype == np.float32 and modes.dtype == np.int64
    assert np.array_equal(stacked_modes(x, BrightnessClassifier()), modes)  # labels agree with the channels
    r = count_stacked_modes(x, BrightnessClassifier())
    assert r["modes"] > 990 and r["kl"] < 0.15  # ~5 samples per mode: nearly uniform
    again, _ = make_stacked(images[:, 0], digits, 5000, seed=0)  # (N, H, W) works too; same seed, same set
    assert np.array_equal(again, x)
    with pytest.raises(ValueError, match="0..9"):
        make_stacked(images, digits + 1, 10, seed=0)


@pytest.mark.parametrize(
    ("family", "model"),
    [
        ("gan", {"latent_dim": 8, "width": 4}),
        ("vae", {"latent_dim": 4, "width": 4}),
        ("diffusion", {"dim": 8, "dim_mults": [1, 2], "patch": 2, "attn": False, "sampling_steps": 2}),
    ],
)
def test_every_image_family_takes_three_channel_digits(family, model):
    """benchmarks/stacked_mnist.py trains the pipeline's families on (3, 28, 28) images: one step and samples."""
    from components.config import TrainConfig
    from components.data.spec import DataSpec
    from components.models import build_model
    from components.training.loop import fit

    torch.set_num_threads(1)
    spec = DataSpec(name="stacked", kind="image", shape=(3, 28, 28), levels=256)
    net = build_model(family, model, spec)
    x = torch.rand(8, 3, 28, 28)
    history = fit(net, (x, torch.zeros(8, dtype=torch.long)), TrainConfig(num_workers=0, epochs=1, batch_size=8))
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    out = net.sample(2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 28, 28) and out.min() >= 0 and out.max() <= 1
