"""Memorization and data-copying checks of generated samples against the training set.

- Nearest-neighbour distances of generated samples to the training and to the held-out test set.
- Nearest-neighbour ratio (as in sail-sg/DiffMemorize): memorized if ‖x − NN₁‖ / ‖x − NN₂‖ < 1/3, NN₁ and NN₂
  the two nearest training points.
- Authenticity (Alaa et al., ICML 2022, arXiv 2102.08921): share of generated samples farther from their
  nearest training point than that point is from its own nearest training neighbour.
- C_T (Meehan et al., arXiv 2004.05675): k-means cells; per cell a Mann-Whitney U test of the distances to
  the nearest training point, generated vs test; combined Z. C_T ≪ 0 means copying, ≫ 0 underfitting.

Inputs are features (N, D) or images (N, C, H, W) (flattened), numpy or torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from components.evaluation.prdc import Features, knn

NN_RATIO_THRESHOLD = 1.0 / 3.0


def _flat(x: Features, *, where: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim < 2 or len(a) == 0:
        raise ValueError(f"{where}: expected a non-empty batch of shape (N, ...), got {a.shape}")
    return a.reshape(len(a), -1).astype(np.float64)


def nn_distances(x: Features, ref: Features, *, k: int = 1, chunk_size: int | None = None) -> np.ndarray:
    """Distances (N, k) from each row of ``x`` to its ``k`` nearest rows of ``ref``, ascending."""
    return knn(_flat(x, where="nn_distances"), _flat(ref, where="nn_distances"), k=k, chunk_size=chunk_size)[0].numpy()


def nn_ratio_memorized(fake: Features, train: Features, *, threshold: float = NN_RATIO_THRESHOLD) -> np.ndarray:
    """Per generated sample: is ‖x − NN₁‖ < threshold · ‖x − NN₂‖ in the training set (or an exact copy)?"""
    d = nn_distances(fake, train, k=2)  # (M, 2)
    # d1 = 0 is an exact copy, memorized even when the training set holds a duplicate (d2 = 0 too).
    return (d[:, 0] < threshold * d[:, 1]) | (d[:, 0] == 0)


def authenticity(fake: Features, train: Features) -> float:
    """Share of generated samples that are authentic (Alaa et al., arXiv 2102.08921, §3).

    A sample g with nearest training point x* is authentic if ‖g − x*‖ > ‖x* − NN(x*)‖, the distance from
    x* to its nearest other training point.
    """
    f, t = _flat(fake, where="authenticity"), _flat(train, where="authenticity")
    d_fake, idx = knn(f, t, k=1)  # (M, 1) each
    d_train = knn(t, t, k=2)[0][:, 1]  # (N,) column 0 is the point itself
    return (d_fake[:, 0] > d_train[idx[:, 0]]).double().mean().item()


def _zu(lq: np.ndarray, lp: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of generated (lq) vs test (lp) distances to training (arXiv 2004.05675).

    Same normalisation as the authors' code (casey-meehan/data-copying): mean mn/2 − 0.5 (continuity
    correction), std sqrt(mn(m + n + 1)/12).
    """
    m, n = len(lq), len(lp)
    u = mannwhitneyu(lq, lp, alternative="less").statistic  # U of the generated sample
    return float((u - (m * n / 2 - 0.5)) / math.sqrt(m * n * (m + n + 1) / 12))


def ct_statistic(
    train: Features,
    test: Features,
    fake: Features,
    *,
    n_cells: int = 5,
    tau: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The C_T data-copying statistic (Meehan et al., arXiv 2004.05675, §3).

    Cells are k-means clusters of the training set. In each cell, distances to the nearest training point
    *of that cell* are compared, generated vs test, with a Z-scored Mann-Whitney U; C_T averages the cell Z
    scores weighted by the test share of each cell, over cells holding more than ``tau`` of the generated
    samples (default 20 / M, i.e. more than 20 samples, as in the authors' experiments). Returns ``c_t``
    (NaN if no cell qualifies), per-cell ``z`` (NaN where unused), ``weights`` and ``cells_used``.
    """
    t, p, q = (_flat(a, where="ct_statistic") for a in (train, test, fake))
    if not 1 <= n_cells <= len(t):
        raise ValueError(f"ct_statistic: expected 1 <= n_cells <= {len(t)} training samples, got {n_cells}")
    tau = 20.0 / len(q) if tau is None else tau
    # One OpenMP thread: on a shared 2-core machine k-means' thread pool spins and runs ~100x slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        kmeans = KMeans(n_clusters=n_cells, n_init=10, random_state=seed).fit(t)
        t_cells, p_cells, q_cells = kmeans.labels_, kmeans.predict(p), kmeans.predict(q)
    p_share = np.bincount(p_cells, minlength=n_cells) / len(p)  # (K,)
    q_share = np.bincount(q_cells, minlength=n_cells) / len(q)  # (K,)
    used = (q_share > tau) & (p_share > 0)  # cells with no test sample carry zero weight anyway
    z = np.full(n_cells, np.nan)
    for c in np.flatnonzero(used):
        t_c = t[t_cells == c]
        lq = nn_distances(q[q_cells == c], t_c)[:, 0]
        lp = nn_distances(p[p_cells == c], t_c)[:, 0]
        z[c] = _zu(lq, lp)
    c_t = float(p_share[used] @ z[used] / p_share[used].sum()) if used.any() else math.nan
    return {"c_t": c_t, "z": z.tolist(), "weights": p_share.tolist(), "cells_used": int(used.sum())}


def memorization_report(
    train: Features,
    test: Features,
    fake: Features,
    *,
    seed: int = 0,
    n_cells: int = 5,
    ratio_threshold: float = NN_RATIO_THRESHOLD,
) -> dict[str, Any]:
    """All memorization checks of ``fake`` against ``train`` (and the held-out ``test``) in one dict.

    Keys: sample counts; medians of the nearest-neighbour distance of generated samples to train and to
    test, and of test samples to train (the no-copying baseline); ``closer_to_train_share`` (generated
    samples nearer to train than to test); ``nn_ratio_memorized`` (rate); ``authenticity``; ``c_t`` and its
    per-cell details.
    """
    t, p, q = (_flat(a, where="memorization_report") for a in (train, test, fake))
    d_qt, d_qp, d_pt = nn_distances(q, t)[:, 0], nn_distances(q, p)[:, 0], nn_distances(p, t)[:, 0]
    ct = ct_statistic(t, p, q, n_cells=n_cells, seed=seed)
    return {
        "n_train": len(t),
        "n_test": len(p),
        "n_fake": len(q),
        "nn_train_median": float(np.median(d_qt)),
        "nn_test_median": float(np.median(d_qp)),
        "test_nn_train_median": float(np.median(d_pt)),
        "closer_to_train_share": float((d_qt < d_qp).mean()),
        "nn_ratio_memorized": float(nn_ratio_memorized(q, t, threshold=ratio_threshold).mean()),
        "authenticity": authenticity(q, t),
        "c_t": ct["c_t"],
        "c_t_cells_used": ct["cells_used"],
        "c_t_z": ct["z"],
        "c_t_n_cells": n_cells,
    }


def text_novelty(generated: Iterable[str], train: Iterable[str], test: Iterable[str]) -> dict[str, float]:
    """Shares of generated strings found in the training set, in the test set only, or new (as makemore)."""
    gen, tr, te = list(generated), set(train), set(test)
    if not gen:
        raise ValueError("text_novelty: expected at least one generated string, got 0")
    in_train = sum(s in tr for s in gen)
    in_test = sum(s in te and s not in tr for s in gen)
    return {
        "in_train": in_train / len(gen),
        "in_test": in_test / len(gen),
        "new": (len(gen) - in_train - in_test) / len(gen),
    }
