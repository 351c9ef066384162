"""Mode coverage on mixtures of Gaussians: modes captured, % high quality, reverse KL.

Protocol of VEEGAN (arXiv 1705.07761 §5.1) and PacGAN (arXiv 1712.04086 §5): a sample is *high quality*
if it lies within ``hq_sigmas`` standard deviations of its nearest mean; a mode is *captured* if it is the
nearest mean of at least one high-quality sample; reverse KL = KL(p̂ ‖ U_K) = log K − H(p̂) over the
histogram of high-quality samples per mode.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.stats import entropy


def _as_numpy(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def kl_to_uniform(counts: np.ndarray) -> float:
    """KL(p̂ ‖ U_K) = log K − H(p̂) in nats for a histogram of ``counts`` over K modes (0 log 0 = 0); log K,
    the value under total collapse, for an empty histogram."""
    c = np.asarray(counts, dtype=np.float64)
    if c.sum() <= 0:
        return math.log(len(c))
    return max(math.log(len(c)) - float(entropy(c)), 0.0)  # clamp −1e-16 round-off of a uniform histogram


def mode_metrics(
    samples: np.ndarray | torch.Tensor,
    means: np.ndarray | torch.Tensor,
    sigma: float,
    *,
    hq_sigmas: float = 3.0,
) -> dict[str, Any]:
    """Mode-collapse metrics of ``samples`` (N, D) against a mixture with ``means`` (K, D) and std ``sigma``.

    Returns ``modes_captured`` (0..K), ``pct_high_quality`` (0..100), ``reverse_kl`` (0..log K),
    ``per_mode_counts`` (K high-quality counts), ``num_modes`` and ``num_samples``. With no high-quality
    sample at all, ``reverse_kl`` is defined as log K, its value under total collapse: the worst score.
    """
    x = _as_numpy(samples).astype(np.float64)
    mu = _as_numpy(means).astype(np.float64)
    if x.ndim != 2 or mu.ndim != 2 or x.shape[1] != mu.shape[1]:
        raise ValueError(f"mode_metrics: expected samples (N, D) and means (K, D), got {x.shape} and {mu.shape}")
    if len(x) == 0:
        raise ValueError("mode_metrics: expected at least one sample, got 0")
    k = len(mu)
    dist = np.linalg.norm(x[:, None, :] - mu[None, :, :], axis=-1)  # (N, K)
    nearest = dist.argmin(axis=1)  # (N,)
    hq = dist[np.arange(len(x)), nearest] <= hq_sigmas * sigma  # (N,)
    counts = np.bincount(nearest[hq], minlength=k)  # (K,)
    n_hq = int(counts.sum())
    return {
        "modes_captured": int((counts > 0).sum()),
        "pct_high_quality": 100.0 * n_hq / len(x),
        "reverse_kl": kl_to_uniform(counts),
        "per_mode_counts": counts.tolist(),
        "num_modes": k,
        "num_samples": len(x),
    }
