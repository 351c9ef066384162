"""Percentile-bootstrap confidence intervals for any statistic of one or more samples.

Hand-written rather than ``scipy.stats.bootstrap``: that resamples 1-D observations along an axis, while
here an observation is a row of a feature matrix (FID, precision/recall) and several samples (real, fake)
are resampled independently and passed whole to a statistic that may return a vector (per-class shares).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import numpy as np
import torch


class CI(NamedTuple):
    """A point estimate, its ``1 − alpha`` bootstrap interval and the mean of the resampled statistics."""

    estimate: Any
    lo: Any
    hi: Any
    boot_mean: Any = None  # boot_mean − estimate: the bias resampling adds (small-N bias of FID, say)

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self._asdict().items()}


def mean_se(values: Any) -> dict[str, float]:
    """Mean, standard error (sample std / sqrt(n); 0 for one value) and n of a set of per-seed results."""
    v = np.asarray(values, dtype=float)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "se": se, "n": len(v)}


def _take(a: Any, idx: np.ndarray) -> Any:
    if isinstance(a, torch.Tensor):
        return a[torch.from_numpy(idx).to(a.device)]
    return np.asarray(a)[idx]


def _scalar_or_array(v: Any) -> Any:
    a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
    return float(a) if a.ndim == 0 else a


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch CPU threads, then restore the previous count.

    Many tiny ops (a 64×64 eigendecomposition per resample) run ~30x slower on 2 threads than on 1 when other
    jobs share the cores: the threads spin-wait for each other.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bootstrap_ci(
    fn: Callable[..., Any],
    *arrays: Any,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    paired: bool = False,
    method: Literal["percentile", "centred"] = "percentile",
) -> CI:
    """``fn(*arrays)`` and its bootstrap interval over ``n_boot`` resamples.

    Each array (numpy or torch) is resampled along axis 0 with replacement: independently (e.g. real and
    generated features for FID) or, with ``paired=True``, with shared indices (e.g. labels and predictions).
    ``fn`` returns a scalar or a fixed-shape vector.

    - ``percentile``: ``lo``/``hi`` are the alpha/2 and 1 − alpha/2 quantiles q of the resampled statistics.
    - ``centred``: the interval for the statistic's expected value at this sample size, from the resampled
      deviations around their own mean m: [estimate − (q_hi − m), estimate + (m − q_lo)]. Use it for
      statistics that resampling with replacement biases, such as FID (repeated rows shrink the spread of a
      set and inflate the distance): the percentile interval then need not even contain the estimate.
    """
    if not arrays:
        raise ValueError("bootstrap_ci: expected at least one array to resample, got none")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"bootstrap_ci: expected 0 < alpha < 1, got {alpha}")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: expected n_boot >= 1, got {n_boot}")
    if method not in ("percentile", "centred"):
        raise ValueError(f"bootstrap_ci: expected method 'percentile' or 'centred', got {method!r}")
    sizes = [len(a) for a in arrays]
    if min(sizes) == 0:
        raise ValueError(f"bootstrap_ci: expected non-empty arrays, got lengths {sizes}")
    if paired and len(set(sizes)) != 1:
        raise ValueError(f"bootstrap_ci: expected arrays of equal length for a paired bootstrap, got lengths {sizes}")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        if paired:
            idx = rng.integers(0, sizes[0], sizes[0])
            resampled = [_take(a, idx) for a in arrays]
        else:
            resampled = [_take(a, rng.integers(0, n, n)) for a, n in zip(arrays, sizes, strict=True)]
        draws.append(np.asarray(_scalar_or_array(fn(*resampled))))
    stacked = np.stack(draws)
    lo, hi = np.quantile(stacked, [alpha / 2, 1 - alpha / 2], axis=0)
    estimate, mean = _scalar_or_array(fn(*arrays)), stacked.mean(axis=0)
    if method == "centred":
        lo, hi = estimate - (hi - mean), estimate + (mean - lo)
    return CI(estimate, _scalar_or_array(lo), _scalar_or_array(hi), _scalar_or_array(mean))
