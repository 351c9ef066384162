"""Attribute shares of samples and their distance to a reference distribution (Choi et al., arXiv 1910.12008).

Pure maths shared by the evaluation (class histogram and its KL to the data) and the audit (fairness
discrepancy and its gate, ``components.audit``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import entropy

KL_EPS = 1e-10  # added to q before renormalising, so a reference share of 0 gives a large but finite KL


def as_labels(labels: Any, num_classes: int, *, where: str) -> np.ndarray:
    """``labels`` as a flat int64 array of classes in [0, num_classes); ``where`` (the caller) heads an error."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    y = y.reshape(-1).astype(np.int64)
    if num_classes < 1:
        raise ValueError(f"{where}: expected num_classes >= 1, got {num_classes}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{where}: expected labels in [0, {num_classes}), got values in [{y.min()}, {y.max()}]")
    return y


def as_distribution(p: Any, name: str, *, where: str) -> np.ndarray:
    """``p`` as a flat float64 probability vector; ``where`` (the caller) heads an error naming ``name``."""
    a = np.asarray(p, dtype=np.float64).reshape(-1)
    if (a < 0).any() or not np.isclose(a.sum(), 1.0):
        raise ValueError(f"{where}: expected {name} to be a probability vector (>= 0, sums to 1), got {a.tolist()}")
    return a


def shares(labels: Any, num_classes: int) -> np.ndarray:
    """Share of each class in ``labels`` (K,), zeros included; all zeros if ``labels`` is empty."""
    y = as_labels(labels, num_classes, where="shares")
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return counts / len(y) if len(y) else counts


def fairness_discrepancy(p: Any, q: Any, *, eps: float = KL_EPS) -> dict[str, float]:
    """Distances from shares ``p`` (generated) to reference ``q``: L2 (Choi et al.'s FD), L1 and KL(p ‖ q).

    KL is ``scipy.stats.entropy(p, q + eps)`` (scipy renormalises q + eps), finite even where q is 0.
    """
    where = "fairness_discrepancy"
    a, b = as_distribution(p, "p", where=where), as_distribution(q, "q", where=where)
    if a.shape != b.shape:
        raise ValueError(f"{where}: expected p and q of the same length, got {len(a)} and {len(b)}")
    return {
        "l2": float(np.linalg.norm(a - b)),  # arXiv 1910.12008 §4.1
        "l1": float(np.abs(a - b).sum()),
        "kl": float(entropy(a, b + eps)),
    }
