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
``chunk_size`` at a time, so memory is O(chunk_size × max(N, M)) instead of O(N² + M² + NM). Exact ties
(integer, quantised or repeated features) are decided exactly: radii are direct distances, and a pair whose
expanded distance is within round-off of a radius is decided on its direct distance ``sum((a − b)²)``.
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


def _float64_pair(a: Features, b: Features, *, where: str) -> tuple[Tensor, Tensor, torch.dtype]:
    """Both sets as 2-D float64 tensors on ``a``'s device, and the default compute dtype (see below)."""
    ta, tb = (x.detach() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x)) for x in (a, b))
    for t in (ta, tb):
        if t.ndim != 2:
            raise ValueError(f"{where}: expected features of shape (N, D), got {tuple(t.shape)}")
    if ta.shape[1] != tb.shape[1]:
        raise ValueError(f"{where}: expected feature sets of one size, got {ta.shape[1]} and {tb.shape[1]}")
    default = torch.float64 if torch.float64 in (ta.dtype, tb.dtype) else torch.float32
    return ta.to(torch.float64), tb.to(device=ta.device, dtype=torch.float64), default


def _centred_pair(a: Features, b: Features, dtype: torch.dtype | None) -> tuple[Tensor, Tensor]:
    """Both sets as 2-D tensors on ``a``'s device, minus ``a``'s mean, in ``dtype``.

    ``dtype=None`` computes in float64 if either input is float64, else float32 (``prdc`` also stores
    float32 distances for float32 features). Distances do not change under a shift, but the expansion
    ‖a‖² − 2a·b + ‖b‖² loses digits when the norms dwarf the distances: centring keeps float32 accurate.
    """
    ta, tb, default = _float64_pair(a, b, where="knn")
    mu = ta.mean(dim=0)  # (D,)
    return (ta - mu).to(dtype or default), (tb - mu).to(dtype or default)


def _lift(a: Tensor, *, left: bool, offset: Tensor | None = None) -> Tensor:
    """Augment rows so that one matmul gives squared distances: [a, ‖a‖², 1] · [−2b, 1, ‖b‖²]ᵀ.

    ``offset`` (left rows only) is subtracted from ‖a‖², so the product is ‖a − b‖² − offset_i.
    """
    sq, one = (a * a).sum(1, keepdim=True), a.new_ones(len(a), 1)  # (n, 1) each
    if offset is not None:
        sq -= offset[:, None]
    return torch.cat([a, sq, one], dim=1) if left else torch.cat([-2.0 * a, one, sq], dim=1)  # (n, D + 2)


def _chunk(chunk_size: int | None, device: torch.device, *, where: str) -> int:
    if chunk_size is None:
        return CPU_CHUNK_SIZE if device.type == "cpu" else GPU_CHUNK_SIZE
    if chunk_size < 1:
        raise ValueError(f"{where}: expected chunk_size >= 1, got {chunk_size}")
    return chunk_size


def _knn_sq(query: Tensor, ref: Tensor, k: int, chunk_size: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest squared distances from each query row to ``ref``, ascending, and their indices."""
    if k > len(ref):
        # reached from knn only: prdc_per_k checks its set sizes first
        raise ValueError(f"knn: expected at least {k} reference points for {k} nearest neighbours, got {len(ref)}")
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
    d2, idx = _knn_sq(q, r, k, _chunk(chunk_size, r.device, where="knn"))
    return d2.sqrt(), idx


def _pair_sq(a: Tensor, b: Tensor, ia: Tensor, ib: Tensor, max_pairs: int) -> Tensor:
    """Direct ‖a[ia] − b[ib]‖² per pair, ``max_pairs`` at a time so the (pairs, D) difference stays small."""
    out = a.new_empty(len(ia))
    for start in range(0, len(ia), max_pairs):
        p = slice(start, start + max_pairs)
        out[p] = (a[ia[p]] - b[ib[p]]).square_().sum(1)
    return out


def _radii_sq(centred: Tensor, orig: Tensor, ks: tuple[int, ...], chunk_size: int) -> Tensor:
    """Squared k-NN ball radii (N, len(ks)) in float64: the (k+1)-th smallest ‖a − b‖², the point included.

    The expansion only selects the kmax + 1 nearest rows; their distances are then recomputed directly,
    ``sum((a − b)²)`` from the uncentred float64 features, and sorted. So a radius is exactly a pair's direct
    distance: ties on lattice or repeated features stay exact ties, and a shift of the features changes
    nothing. (A selected neighbour can differ from the true one only where two true distances differ by
    less than the expansion's round-off; then the radius is still a direct distance within that round-off.)
    """
    kmax = max(ks)
    idx = _knn_sq(centred, centred, kmax + 1, chunk_size)[1]  # (N, kmax + 1), ascending expanded distance
    n, d = orig.shape
    out = orig.new_empty(n, kmax + 1)
    # one 1 MiB buffer for the gathered neighbours: a fresh 10 MiB temporary per step cost more in page
    # faults (glibc maps it anew) than the arithmetic
    step = max(1, min(n, (1 << 17) // ((kmax + 1) * d)))
    buf = orig.new_empty(step * (kmax + 1), d)
    for start in range(0, n, step):
        m = min(step, n - start)
        nb = torch.index_select(orig, 0, idx[start : start + m].reshape(-1), out=buf[: m * (kmax + 1)])
        nb = nb.view(m, kmax + 1, d).sub_(orig[start : start + m, None, :]).square_()
        torch.sum(nb, dim=2, out=out[start : start + m])  # (m, kmax + 1) direct ‖a − b‖²
    return out.sort(dim=1).values[:, list(ks)]


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
    ``prdc.compute_prdc`` to round-off. Every pair whose expanded distance lies within the expansion's
    round-off bound of a radius is decided on its direct float64 distance, so exact ties (integer or
    quantised features) are decided as ``prdc`` decides them, and a shift of both sets changes nothing.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"prdc_per_k: expected nearest-neighbour counts k >= 1, got {ks}")
    xo, yo, default = _float64_pair(real, fake, where="prdc_per_k")  # uncentred float64: the direct distances
    dtype = dtype or default
    mu = xo.mean(dim=0)  # (D,)
    x, y = (xo - mu).to(dtype), (yo - mu).to(dtype)  # centred: see _centred_pair
    chunk_size = _chunk(chunk_size, x.device, where="prdc_per_k")
    kmax = max(ks)
    for name, t in (("real", x), ("fake", y)):
        if len(t) <= kmax:
            raise ValueError(f"prdc_per_k: expected more than k={kmax} {name} samples, got {len(t)}")

    # Squared radius of each ball (arXiv 1904.06991, arXiv 2002.09797) = direct squared distance to the k-th
    # neighbour, the point itself counted first, as prdc.compute_prdc (its get_kth_value with k + 1).
    real_r2 = _radii_sq(x, xo, ks, chunk_size)  # (N, len(ks)) float64
    fake_r2 = _radii_sq(y, yo, ks, chunk_size)  # (M, len(ks)) float64

    # One matmul per block gives E = ‖x_i − y_j‖² − r²_i0 (radius of ks[0] lifted in); for ks[l] the block
    # holds E − δ_il, δ_il = r²_il − r²_i0. Round-off bound of the expansion (centring, ‖·‖², the D + 2 term
    # dot product; see _lift) on a pair near a radius: ≲ (9D + 24)·u·(‖x_i‖² + r²), u = eps/2. With
    # tol = 8(D + 4)·eps·(‖x_i‖² + r²) a computed value below −tol is surely inside, above +tol surely
    # outside; pairs in between are decided on the direct distance, with prdc's strict < (a point on the
    # boundary is outside; points repeated more than k times have radius 0 and cover nothing).
    slack = 8 * (x.shape[1] + 4) * torch.finfo(dtype).eps
    sqx = (x * x).sum(1).double()  # (N,)
    r0 = real_r2[:, 0]
    tol_real = (slack * (sqx + real_r2.amax(1))).to(dtype)  # (N,) real balls: precision, density, coverage
    # recall compares with the fake radii: one bound per real row, so it takes the largest fake radius
    tol_fake = (slack * (sqx + r0)[:, None] + slack * fake_r2.amax(0)).to(dtype)  # (N, len(ks))
    delta = (real_r2 - r0[:, None]).to(dtype)  # (N, len(ks))
    fake_t = fake_r2.T.to(dtype).contiguous()  # (len(ks), M)
    r0_t = r0.to(dtype)

    # counts in float64 (exact): a float 0/1 block sums ~4x faster over rows than a bool one on CPU
    n_inside = torch.zeros(len(ks), len(y), dtype=torch.float64, device=x.device)  # real balls holding fake j
    recall = torch.zeros(len(ks), len(x), dtype=torch.bool, device=x.device)  # real i inside some fake ball
    coverage = torch.zeros(len(ks), len(x), dtype=torch.bool, device=x.device)  # real ball i holds some fake
    xl, yl = _lift(x, left=True, offset=r0_t), _lift(y, left=False)
    c = min(chunk_size, len(x))
    block, buf, ind = (xl.new_empty(c, len(y)) for _ in range(3))  # (c, M) each, reused: see _knn_sq
    max_pairs = max(1, c * len(y) // x.shape[1])  # direct distances: (max_pairs, D) float64 ~ two blocks
    for start in range(0, len(x), chunk_size):
        n = min(chunk_size, len(x) - start)
        e0 = torch.mm(xl[start : start + n], yl.T, out=block[:n])  # (n, M): ‖x_i − y_j‖² − r²_i0
        b, m = buf[:n], ind[:n]
        e0_min = e0.amin(dim=1)  # (n,)
        for j in range(len(ks)):
            tol, dl = tol_real[start : start + n], delta[start : start + n, j]  # (n,) each
            e = e0 if j == 0 else torch.sub(e0, dl[:, None], out=b)  # ‖x_i − y_j‖² − r²_ij
            # precision, density: fake j surely inside real ball i; pairs within tol are added below
            n_inside[j] += torch.lt(e, -tol[:, None], out=m).sum(dim=0)  # 0/1 in dtype: exact sums
            e_min = e0_min if j == 0 else e0_min - dl  # = row minimum of e (subtraction is monotone)
            # |e| and its column minimum find the fakes with a pair within tol; only those columns are read
            e_abs = torch.abs(e, out=b)
            cols = (e_abs.amin(dim=0) <= tol.max()).nonzero()[:, 0]
            hit = torch.zeros(n, dtype=torch.bool, device=x.device)
            if len(cols):
                ii, cc = (e_abs[:, cols] <= tol[:, None]).nonzero(as_tuple=True)
                jj = cols[cc]
                inside = _pair_sq(xo, yo, ii + start, jj, max_pairs) < real_r2[ii + start, j]
                n_inside[j].index_add_(0, jj, inside.to(torch.float64))
                hit[ii[inside]] = True
            # coverage (arXiv 2002.09797): some fake surely inside ball i, or one decided directly
            coverage[j, start : start + n] = (e_min < -tol) | ((e_min.abs() <= tol) & hit)

            # recall (arXiv 1904.06991): real i inside some fake ball; q = ‖x_i − y_j‖² − r²_j − r²_i0
            q = torch.sub(e0, fake_t[j][None, :], out=b)
            q_min = q.amin(dim=1) + r0_t[start : start + n]  # row minimum of ‖x_i − y_j‖² − r²_j
            tf = tol_fake[start : start + n, j]
            near = (q_min.abs() <= tf).nonzero()[:, 0]  # rows with a pair within tol and none surely inside
            hit = torch.zeros(n, dtype=torch.bool, device=x.device)
            if len(near):
                g = q[near] + r0_t[start + near, None]  # (rows, M)
                aa, jj = (g.abs() <= tf[near, None]).nonzero(as_tuple=True)
                ii = near[aa]
                inside = _pair_sq(xo, yo, ii + start, jj, max_pairs) < fake_r2[jj, j]
                hit[ii[inside]] = True
            recall[j, start : start + n] = (q_min < -tf) | hit

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
            raise ValueError(
                "PRDC.compute: expected both real and fake features, got "
                f"{len(self.real_features)} real and {len(self.fake_features)} fake batches; "
                "call update(x, real=True/False) first"
            )
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
