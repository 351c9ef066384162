"""Attribute shares of generated samples against a reference, after Choi et al. (arXiv 1910.12008).

An attribute classifier labels the generated samples; p̂ is the share of each attribute value (values
never produced count as 0); the fairness discrepancy is the distance from p̂ to a reference distribution
(training shares or uniform). Shares come with bootstrap intervals because classifier error and finite N
both move them (Teo et al., NeurIPS 2023).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from components.evaluation.shares import as_distribution, as_labels, shares
from components.evaluation.stats import bootstrap_ci


def skew(p: Any) -> float:
    """Total-variation distance from uniform, ½ Σ |p_i − 1/K|: 0 if balanced, 1 − 1/K if one class only."""
    a = as_distribution(p, "p", where="skew")
    return float(0.5 * np.abs(a - 1.0 / len(a)).sum())


def amplification(p_gen: Any, p_train: Any) -> float:
    """Bias amplification ``skew(p_gen) − skew(p_train)``: > 0 means the model skews more than its data."""
    where = "amplification"
    a, b = as_distribution(p_gen, "p_gen", where=where), as_distribution(p_train, "p_train", where=where)
    if a.shape != b.shape:
        raise ValueError(f"{where}: expected p_gen and p_train of the same length, got {len(a)} and {len(b)}")
    return skew(a) - skew(b)


def bootstrap_shares(
    labels: Any, num_classes: int, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, list[float]]:
    """Shares per class with ``1 − alpha`` percentile-bootstrap intervals: ``shares``, ``lo``, ``hi``."""
    y = as_labels(labels, num_classes, where="bootstrap_shares")
    if len(y) == 0:
        raise ValueError("bootstrap_shares: expected at least one label to bootstrap, got 0")
    ci = bootstrap_ci(lambda s: shares(s, num_classes), y, n_boot=n_boot, seed=seed, alpha=alpha)
    return {"shares": ci.estimate.tolist(), "lo": ci.lo.tolist(), "hi": ci.hi.tolist()}


def group_gap(values: Mapping[str, float]) -> dict[str, Any]:
    """Largest minus smallest per-group value (per-group FID, recall, ...) and which groups they are.

    Minority groups tend to be generated less often and worse (Jain et al., arXiv 2001.09528).
    """
    finite = {g: float(v) for g, v in values.items() if np.isfinite(v)}
    if not finite:
        raise ValueError(f"group_gap: expected at least one finite per-group value, got {dict(values)}")
    hi, lo = max(finite, key=finite.__getitem__), min(finite, key=finite.__getitem__)
    return {"gap": finite[hi] - finite[lo], "max_group": hi, "min_group": lo}
