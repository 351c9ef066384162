"""Stacked MNIST (1,000 modes): build the data, count the modes of samples (docs/protocols.md §2).

Protocol (VEEGAN arXiv 1705.07761 §5.2; PacGAN arXiv 1712.04086 §5.2): three random MNIST digits are
stacked as the three channels of one image, so the data have 10³ = 1,000 equally likely modes (digit
triples). A pretrained MNIST classifier labels each channel of a generated image; a mode is covered if at
least one sample falls in it; KL(p̂ ‖ U₁₀₀₀) = Σ p̂ log(1000 p̂) = log 1000 − H(p̂), with p̂ the empirical
mode histogram of the samples (no smoothing: U has full support, and 0 log 0 = 0). 26,000 samples
(PacGAN's code: 25,600). KL is 0 for a uniform histogram and log 1000 ≈ 6.91 for a single mode.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from components.evaluation.modes import kl_to_uniform

NUM_MODES = 1000
CHANNELS = 3


class DigitClassifier(Protocol):
    """Anything that labels single-channel digits: ``predict((N, 1, H, W)) -> (N,)`` labels in 0..9."""

    def predict(self, x: Tensor) -> Tensor | np.ndarray: ...


def make_stacked(images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Stacked MNIST images from single digits: channel c of image i is ``images[idx[i, c]]`` for
    three independent uniform draws; returns float32 (n, 3, H, W) and the modes 100·d0 + 10·d1 + d2 (int64).

    ``images`` is (N, H, W) or (N, 1, H, W) in [0, 1]; ``labels`` (N,) digits 0..9.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"make_stacked: expected single-channel digits (N, 1, H, W), got {x.shape}")
        x = x[:, 0]
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 3 or len(x) != len(y):
        raise ValueError(f"make_stacked: expected images (N, H, W) and labels (N,), got {x.shape} and {y.shape}")
    if y.min() < 0 or y.max() > 9:
        raise ValueError(f"make_stacked: expected digit labels 0..9, got values in [{y.min()}, {y.max()}]")
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n, CHANNELS))  # (n, 3)
    digits = y[idx]  # (n, 3)
    return x[idx], digits @ np.array([100, 10, 1], dtype=np.int64)  # (n, 3, H, W), (n,)


def stacked_modes(images: Tensor | np.ndarray, classifier: DigitClassifier) -> np.ndarray:
    """The mode (0..999) of each (N, 3, H, W) image: each channel labelled by ``classifier`` on its own."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) if isinstance(images, np.ndarray) else images)
    if x.ndim != 4 or x.shape[1] != CHANNELS:
        raise ValueError(f"stacked_modes: expected Stacked MNIST images (N, 3, H, W), got {tuple(x.shape)}")
    digits = []
    for c in range(CHANNELS):
        d = np.asarray(torch.as_tensor(classifier.predict(x[:, c : c + 1].float())).cpu(), dtype=np.int64)
        if d.shape != (len(x),) or (len(d) and (d.min() < 0 or d.max() > 9)):
            raise ValueError(
                f"stacked_modes: expected the classifier to return (N,) digits 0..9, got shape {d.shape}"
                + (f" with values in [{d.min()}, {d.max()}]" if d.size else "")
            )
        digits.append(d)
    return 100 * digits[0] + 10 * digits[1] + digits[2]


def count_stacked_modes(images: Tensor | np.ndarray, classifier: DigitClassifier) -> dict[str, Any]:
    """Modes covered (of 1,000) and KL(p̂ ‖ U₁₀₀₀) of generated Stacked MNIST images (docs/protocols.md §2.2)."""
    modes = stacked_modes(images, classifier)
    counts = np.bincount(modes, minlength=NUM_MODES)  # (1000,)
    return {
        "modes": int((counts > 0).sum()),
        "kl": kl_to_uniform(counts),
        "kl_max": math.log(NUM_MODES),
        "n_samples": int(len(modes)),
        "histogram": counts.tolist(),
    }
