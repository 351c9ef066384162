"""Percentile-bootstrap confidence intervals for any statistic of one or more samples.

Hand-written rather than ``scipy.stats.bootstrap``: that resamples 1-D observations along an axis, while
here an observation is a row of a feature matrix (FID, precision/recall) and several samples (real, fake)
are resampled independently and passed whole to a statistic that may return a vector (per-class shares).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch


class CI(NamedTuple):
    """A point estimate and its ``1 − alpha`` percentile-bootstrap interval (floats or arrays)."""

    estimate: Any
    lo: Any
    hi: Any

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self._asdict().items()}


def _take(a: Any, idx: np.ndarray) -> Any:
    if isinstance(a, torch.Tensor):
        return a[torch.from_numpy(idx).to(a.device)]
    return np.asarray(a)[idx]


def _scalar_or_array(v: Any) -> Any:
    a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
    return float(a) if a.ndim == 0 else a


def bootstrap_ci(
    fn: Callable[..., Any],
    *arrays: Any,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    paired: bool = False,
) -> CI:
    """``fn(*arrays)`` and its percentile-bootstrap interval over ``n_boot`` resamples.

    Each array (numpy or torch) is resampled along axis 0 with replacement: independently (e.g. real and
    generated features for FID) or, with ``paired=True``, with shared indices (e.g. labels and predictions).
    ``fn`` returns a scalar or a fixed-shape vector; ``lo``/``hi`` are the alpha/2 and 1 − alpha/2 quantiles.
    """
    if not arrays:
        raise ValueError("Expected at least one array to resample, got none")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"Expected 0 < alpha < 1, got {alpha}")
    if n_boot < 1:
        raise ValueError(f"Expected n_boot >= 1, got {n_boot}")
    sizes = [len(a) for a in arrays]
    if min(sizes) == 0:
        raise ValueError(f"Expected non-empty arrays, got lengths {sizes}")
    if paired and len(set(sizes)) != 1:
        raise ValueError(f"Expected arrays of equal length for a paired bootstrap, got lengths {sizes}")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        if paired:
            idx = rng.integers(0, sizes[0], sizes[0])
            resampled = [_take(a, idx) for a in arrays]
        else:
            resampled = [_take(a, rng.integers(0, n, n)) for a, n in zip(arrays, sizes, strict=True)]
        draws.append(np.asarray(_scalar_or_array(fn(*resampled))))
    lo, hi = np.quantile(np.stack(draws), [alpha / 2, 1 - alpha / 2], axis=0)
    return CI(_scalar_or_array(fn(*arrays)), _scalar_or_array(lo), _scalar_or_array(hi))
