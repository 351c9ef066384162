"""Precision / recall and density / coverage of generated features, in chunked torch.

- Precision / recall (Kynkäänniemi et al., arXiv 1904.06991): the manifold of a set is the union of balls
  around its points, each with radius the distance to the point's k-th nearest neighbour in the set (k = 3).
  Precision = share of fake points inside the real manifold; recall = share of real points inside the fake
  manifold.
- Density / coverage (Naeem et al., arXiv 2002.09797), k = 5: density = (1/kM) Σ_j Σ_i 1[Y_j ∈ B(X_i, r_i)];
  coverage = (1/N) Σ_i 1[∃ j: Y_j ∈ B(X_i, r_i)].

:func:`prdc` follows the authors' ``prdc.compute_prdc`` exactly (the k-th neighbour counts the point
itself at distance 0; strict ``<``, so points repeated more than k times have radius 0 and cover nothing)
and matches its values to round-off, without ever building an N×M distance matrix: rows are processed
``chunk_size`` at a time, so memory is O(chunk_size × max(N, M)) instead of O(N² + M² + NM).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

# Rows per block when chunk_size is None. On 2 CPU cores (10k vs 10k, 64-D) 128 rows ran fastest of 128-2048:
# a (128, M) block stays in cache between the matmul and the comparisons. A GPU wants bigger launches.
CPU_CHUNK_SIZE, GPU_CHUNK_SIZE = 128, 1024
Features = np.ndarray | Tensor


def _centred_pair(a: Features, b: Features, dtype: torch.dtype | None) -> tuple[Tensor, Tensor]:
    """Both sets as 2-D tensors on ``a``'s device, minus ``a``'s mean, in ``dtype``.

    ``dtype=None`` computes in float64 if either input is float64, else float32 (``prdc`` also stores
    float32 distances for float32 features). Distances do not change under a shift, but the expansion
    ‖a‖² − 2a·b + ‖b‖² loses digits when the norms dwarf the distances: centring keeps float32 accurate.
    """
    ta, tb = (x.detach() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x)) for x in (a, b))
    for t in (ta, tb):
        if t.ndim != 2:
            raise ValueError(f"Expected features of shape (N, D), got {tuple(t.shape)}")
    if ta.shape[1] != tb.shape[1]:
        raise ValueError(f"Expected feature sets of one size, got {ta.shape[1]} and {tb.shape[1]}")
    if dtype is None:
        dtype = torch.float64 if torch.float64 in (ta.dtype, tb.dtype) else torch.float32
    ta, tb = ta.to(torch.float64), tb.to(device=ta.device, dtype=torch.float64)
    mu = ta.mean(dim=0)  # (D,)
    return (ta - mu).to(dtype), (tb - mu).to(dtype)


def _lift(a: Tensor, *, left: bool) -> Tensor:
    """Augment rows so that one matmul gives squared distances: [a, ‖a‖², 1] · [−2b, 1, ‖b‖²]ᵀ."""
    sq, one = (a * a).sum(1, keepdim=True), a.new_ones(len(a), 1)  # (n, 1) each
    return torch.cat([a, sq, one], dim=1) if left else torch.cat([-2.0 * a, one, sq], dim=1)  # (n, D + 2)


def _chunk(chunk_size: int | None, device: torch.device) -> int:
    if chunk_size is None:
        return CPU_CHUNK_SIZE if device.type == "cpu" else GPU_CHUNK_SIZE
    if chunk_size < 1:
        raise ValueError(f"Expected chunk_size >= 1, got {chunk_size}")
    return chunk_size


def _knn_sq(query: Tensor, ref: Tensor, k: int, chunk_size: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest squared distances from each query row to ``ref``, ascending, and their indices."""
    if k > len(ref):
        raise ValueError(f"Expected at least {k} reference points for {k} nearest neighbours, got {len(ref)}")
    q, r = _lift(query, left=True), _lift(ref, left=False)
    # Every buffer is allocated once, before the loop. Allocating a (c, M) block and small (c, k) results
    # per chunk fragments the heap (the small ones land in the freed block, the next block goes on top):
    # 10k vs 10k held ~380 MiB resident instead of ~20 (benchmarks/prdc_speed.py measures the peak).
    block = q.new_empty(min(chunk_size, len(q)), len(r))  # (c, M)
    vals = q.new_empty(len(q), k)  # (N, k)
    idx = torch.empty(len(q), k, dtype=torch.int64, device=q.device)
    for start in range(0, len(q), chunk_size):
        rows = slice(start, start + chunk_size)
        d2 = torch.mm(q[rows], r.T, out=block[: len(q[rows])])  # (c, M) squared distances
        torch.topk(d2, k, dim=1, largest=False, out=(vals[rows], idx[rows]))  # (c, k)
    # ‖a‖² − 2a·b + ‖b‖² can round below 0; clamp as scikit-learn does (only the k kept values)
    return vals.clamp_min_(0.0), idx


def knn(
    query: Features,
    ref: Features,
    *,
    k: int = 1,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Distances (Nq, k) from each query row to its ``k`` nearest rows of ``ref``, ascending; their indices.

    If ``query`` is ``ref`` each point is its own first neighbour at distance 0, as in ``prdc``.
    """
    r, q = _centred_pair(ref, query, dtype)
    d2, idx = _knn_sq(q, r, k, _chunk(chunk_size, r.device))
    return d2.sqrt(), idx


def prdc_per_k(
    real: Features,
    fake: Features,
    *,
    ks: Sequence[int] = (3, 5),
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> dict[int, dict[str, float]]:
    """Precision, recall, density and coverage for every ``k`` in ``ks``, sharing one pass over the distances.

    ``real`` (N, D) and ``fake`` (M, D) are numpy arrays or tensors (on any device). Distances are computed in
    ``dtype``, by default float64 if an input is float64 and float32 otherwise; float64 matches
    ``prdc.compute_prdc`` to round-off.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"Expected nearest-neighbour counts k >= 1, got {ks}")
    x, y = _centred_pair(real, fake, dtype)
    chunk_size = _chunk(chunk_size, x.device)
    kmax = max(ks)
    for name, t in (("real", x), ("fake", y)):
        if len(t) <= kmax:
            raise ValueError(f"Expected more than k={kmax} {name} samples, got {len(t)}")

    # Squared radius of each ball = squared distance to the k-th neighbour; column 0 is the point itself.
    real_r2 = _knn_sq(x, x, kmax + 1, chunk_size)[0][:, list(ks)]  # (N, len(ks))
    fake_r2 = _knn_sq(y, y, kmax + 1, chunk_size)[0][:, list(ks)]  # (M, len(ks))
    # The cross distances below are left unclamped (one pass fewer): "clamp(d²) < r²" equals "d² < r²" when
    # r² > 0 and is never true when r² = 0, hence the −inf. Strict <, as prdc.compute_prdc: a point on a
    # ball's boundary is outside it, so identical points with radius 0 cover nothing.
    real_t = torch.where(real_r2 > 0, real_r2, -torch.inf).T.contiguous()  # (len(ks), N)
    fake_t = torch.where(fake_r2 > 0, fake_r2, -torch.inf).T.contiguous()  # (len(ks), M)

    n_inside = torch.zeros(len(ks), len(y), dtype=torch.int64, device=x.device)  # real balls holding fake j
    recall = torch.zeros(len(ks), len(x), dtype=torch.bool, device=x.device)  # real i inside some fake ball
    coverage = torch.zeros(len(ks), len(x), dtype=torch.bool, device=x.device)  # real ball i holds some fake
    xl, yl = _lift(x, left=True), _lift(y, left=False)
    block = xl.new_empty(min(chunk_size, len(x)), len(y))  # (c, M), reused: see _knn_sq
    for start in range(0, len(x), chunk_size):
        rows = slice(start, start + chunk_size)
        d2 = torch.mm(xl[rows], yl.T, out=block[: len(xl[rows])])  # (c, M) squared distances
        nn2 = d2.amin(dim=1)  # (c,)
        for j in range(len(ks)):
            n_inside[j] += (d2 < real_t[j, rows, None]).sum(dim=0, dtype=torch.int32)
            recall[j, rows] = (d2 < fake_t[j, None, :]).any(dim=1)
            coverage[j, rows] = nn2 < real_t[j, rows]

    out = {}
    for j, k in enumerate(ks):
        out[k] = {
            "precision": (n_inside[j] > 0).double().mean().item(),
            "recall": recall[j].double().mean().item(),
            "density": n_inside[j].sum().item() / (k * len(y)),
            "coverage": coverage[j].double().mean().item(),
        }
    return out


def prdc(
    real: Features,
    fake: Features,
    *,
    nearest_k: int = 5,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Drop-in for ``prdc.compute_prdc(real, fake, nearest_k)``: precision, recall, density, coverage."""
    return prdc_per_k(real, fake, ks=(nearest_k,), chunk_size=chunk_size, dtype=dtype)[nearest_k]


def precision_recall(
    real: Features,
    fake: Features,
    *,
    k: int = 3,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Improved precision and recall (arXiv 1904.06991) with k = 3 as in the paper."""
    res = prdc(real, fake, nearest_k=k, chunk_size=chunk_size, dtype=dtype)
    return {"precision": res["precision"], "recall": res["recall"]}


class PRDC(Metric):
    """Precision/recall at ``pr_k`` (arXiv 1904.06991) and density/coverage at ``dc_k`` (arXiv 2002.09797).

    ``update(x, real=True|False)`` accumulates features (or inputs passed through ``feature``, a module
    mapping a batch to (B, D) features); ``compute()`` returns the four values as 0-d tensors.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    real_features: list[Tensor]
    fake_features: list[Tensor]

    def __init__(
        self,
        *,
        pr_k: int = 3,
        dc_k: int = 5,
        feature: nn.Module | None = None,
        chunk_size: int | None = None,
        compute_dtype: torch.dtype | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.pr_k, self.dc_k = pr_k, dc_k
        self.feature = feature
        self.chunk_size = chunk_size
        self.compute_dtype = compute_dtype
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    def update(self, x: Tensor, real: bool) -> None:
        if self.feature is not None:
            with torch.no_grad():
                x = self.feature(x)
        feats = x.detach().flatten(1)  # (B, D)
        (self.real_features if real else self.fake_features).append(feats)

    def compute(self) -> dict[str, Tensor]:
        if not self.real_features or not self.fake_features:
            raise ValueError("Expected both real and fake features; call update(x, real=True/False) first")
        real, fake = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
        res = prdc_per_k(real, fake, ks=(self.pr_k, self.dc_k), chunk_size=self.chunk_size, dtype=self.compute_dtype)
        pr, dc = res[self.pr_k], res[self.dc_k]
        values = {
            "precision": pr["precision"],
            "recall": pr["recall"],
            "density": dc["density"],
            "coverage": dc["coverage"],
        }
        return {name: torch.tensor(v, device=real.device) for name, v in values.items()}
