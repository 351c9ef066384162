"""A label-free feature space: a small conv encoder trained SimCLR-style (Chen et al., arXiv 2002.05709).

The domain classifier (``components.evaluation.features``) sees the data through its labels: two images of
one class may sit close together however different they look. The SimCLR encoder is trained without labels
to map two random views of one image close together and views of different images apart, so FID/KID/PRDC
in its space judge samples by what the augmentations leave of an image, not by its class. Labels are used
only to *judge* the frozen features (k-NN and linear-probe accuracy on the test split).

- Views (:func:`augment`): random resized crop, small rotation and shear, translation, cutout. No flips
  (a mirrored 2 or 7 is not a digit) and, deliberately, no additive noise or intensity jitter: the space
  is invariant to whatever the views vary, and an evaluation space blind to noisy or faint strokes would
  not see those failures of generated samples.
- Loss (:func:`nt_xent`): NT-Xent, arXiv 2002.05709 eq. 1, averaged over all 2N anchors (Alg. 1).
- Network (:class:`SimCLREncoder`): 3 conv layers, pooled to 2×2, a linear layer to ``feature_dim``; the
  features are the representation *before* the projection head, which is used for training only
  (arXiv 2002.05709 §4.2: h is better than g(h) for downstream use).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from components.config import SimCLRConfig
from components.evaluation.features import TrainedExtractor
from components.io import atomic_path, sha256_file

SUBDIR = "simclr"  # data/features/<dataset>/simclr/, beside the domain classifier
WEIGHTS = "encoder.safetensors"
META = "meta.json"


# ------------------------------------------------------------------------------------------------- views


def augment(
    x: Tensor,
    gen: torch.Generator,
    *,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    max_rotate_deg: float = 15.0,
    max_shear: float = 0.15,
    max_shift: float = 0.1,
    cutout: float = 0.25,
    cutout_p: float = 0.5,
) -> Tensor:
    """One random view of each image of ``x`` (B, C, H, W) in [0, 1]; geometry per image, one affine warp.

    - crop: a window of ``crop_scale`` of the area and aspect ratio in ``ratio`` (each side at most the
      image's), resized back to H × W (SimCLR's key augmentation, arXiv 2002.05709 §3 and Fig. 5);
    - rotation up to ``max_rotate_deg`` and shear up to ``max_shear``: the slant of handwriting;
    - translation up to ``max_shift`` of the side (±2.8 px at 28, ±0.8 px at 8); outside is background (0);
    - cutout (DeVries & Taylor, arXiv 1708.04552): with probability ``cutout_p`` a square of ``cutout`` of
      the side is zeroed, so one stroke cannot identify an image.
    """
    b, _, h, w = x.shape
    u = torch.rand(b, 8, generator=gen)  # every random number of this batch, (B, 8)
    area = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * u[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    sx, sy = (area * log_r.exp()).sqrt().clamp(max=1.0), (area / log_r.exp()).sqrt().clamp(max=1.0)
    cx = (1 - sx) * (2 * u[:, 2] - 1) + max_shift * 2 * (2 * u[:, 3] - 1)  # crop position + shift, in [-1, 1] units
    cy = (1 - sy) * (2 * u[:, 4] - 1) + max_shift * 2 * (2 * u[:, 5] - 1)
    angle = math.radians(max_rotate_deg) * (2 * u[:, 6] - 1)
    shear = max_shear * (2 * u[:, 7] - 1)
    cos, sin = angle.cos(), angle.sin()
    # output (u, v) -> input: centre + diag(sx, sy) · R(angle) · [[1, shear], [0, 1]] · (u, v)
    a11, a12 = sx * cos, sx * (cos * shear - sin)
    a21, a22 = sy * sin, sy * (sin * shear + cos)
    theta = torch.stack([torch.stack([a11, a12, cx], 1), torch.stack([a21, a22, cy], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cutout > 0 and cutout_p > 0:
        side = max(1, round(cutout * min(h, w)))
        cut = torch.rand(b, 3, generator=gen)  # apply?, top, left
        top = (cut[:, 1] * (h - side + 1)).long()[:, None, None]  # (B, 1, 1)
        left = (cut[:, 2] * (w - side + 1)).long()[:, None, None]
        rows, cols = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
        box = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)  # (B, H, W)
        out = out.masked_fill((box & (cut[:, 0] < cutout_p)[:, None, None])[:, None], 0.0)
    return out.clamp(0, 1)


# -------------------------------------------------------------------------------------------------- loss


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent (arXiv 2002.05709 eq. 1): ``z1[i]`` and ``z2[i]`` (each (N, d)) are the positive pair; the
    other 2N − 2 projections of the batch are the negatives. Cosine similarities over ``temperature``;
    the mean of the 2N anchors' losses (Alg. 1: ℓ(2k−1, 2k) + ℓ(2k, 2k−1), over 2N)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, d)
    sim = (z @ z.T) / temperature  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, -math.inf)  # k ≠ i in the denominator
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # (2N,)
    return F.cross_entropy(sim, positive)


# ------------------------------------------------------------------------------------------------ network


class SimCLREncoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> features h (B, num_features): the representation FID/KID/PRDC use.

    ``forward`` returns the features and ``num_features`` is set, so the module plugs straight into
    torchmetrics' FID/KID (``feature=<module>``), as the domain classifier does.
    """

    def __init__(self, *, channels: int, width: int = 32, num_features: int = 64):
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),  # H/2
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),  # H/4
            nn.BatchNorm2d(4 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),  # (B, 16 * width)
            nn.Linear(16 * width, num_features),
            nn.BatchNorm1d(num_features),
            nn.ReLU(),  # h is non-negative, as SimCLR's ResNet output after average pooling
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.float())  # (B, F)


def projection_head(num_features: int) -> nn.Module:
    """g(h) = W2 ReLU(W1 h) (arXiv 2002.05709 §2.1); for training only."""
    return nn.Sequential(nn.Linear(num_features, num_features), nn.ReLU(), nn.Linear(num_features, num_features))


@dataclass(frozen=True)
class TrainedEncoder(TrainedExtractor):
    model: SimCLREncoder


# ----------------------------------------------------------------------------------------------- training


def train_simclr(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    cfg: SimCLRConfig,
) -> tuple[SimCLREncoder, dict[str, Any]]:
    """Train the encoder on the images of ``train`` (labels unused); report its final loss and, when the
    data have at least two classes, the k-NN and linear-probe test accuracy of its frozen features."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.from_numpy(np.ascontiguousarray(train[0], dtype=np.float32))
    model = SimCLREncoder(channels=x.shape[1], width=cfg.width, num_features=cfg.feature_dim)
    head = projection_head(cfg.feature_dim)
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    batch = min(cfg.batch_size, len(x))
    per_epoch = len(x) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * per_epoch)
    history: list[float] = []
    model.train()
    head.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(per_epoch):
            xb = x[perm[i * batch : (i + 1) * batch]]
            views = torch.cat([augment(xb, gen), augment(xb, gen)])  # (2B, C, H, W): one BatchNorm pass
            z1, z2 = head(model(views)).chunk(2)
            loss = nt_xent(z1, z2, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        history.append(total / per_epoch)
    model.eval()
    report: dict[str, Any] = {
        "final_loss": history[-1],
        "loss_history": [round(v, 4) for v in history],
        "loss_chance": math.log(2 * batch - 1),  # NT-Xent of a uniform similarity: log(2B − 1)
        "n_train": int(len(x)),
        "steps": cfg.epochs * per_epoch,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    report.update(probe(TrainedEncoder(model, {}), train, test))
    return model, report


def knn_accuracy(f_train: Tensor, y_train: Tensor, f_test: Tensor, y_test: Tensor, *, k: int = 10) -> float:
    """Cosine k-NN: each test point takes the class with the largest summed similarity among its ``k``
    nearest training points (the weighted k-NN monitor of Wu et al., arXiv 1805.01978, with weight = cos)."""
    a, b = F.normalize(f_test.double(), dim=1), F.normalize(f_train.double(), dim=1)
    sim, idx = (a @ b.T).topk(min(k, len(b)), dim=1)  # (M, k)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    votes = torch.zeros(len(a), num_classes, dtype=torch.float64).scatter_add_(1, y_train[idx], sim)
    return float((votes.argmax(1) == y_test).double().mean())


def linear_probe_accuracy(
    f_train: Tensor, y_train: Tensor, f_test: Tensor, y_test: Tensor, *, l2: float = 1e-3, steps: int = 100
) -> float:
    """Multinomial logistic regression on standardised frozen features (the linear evaluation protocol of
    arXiv 2002.05709 §4.2), fitted full-batch by L-BFGS with an ``l2`` penalty; deterministic."""
    mu, sd = f_train.double().mean(0), f_train.double().std(0).clamp_min(1e-8)
    a, b = (f_train.double() - mu) / sd, (f_test.double() - mu) / sd
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    w = torch.zeros(a.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, y_train) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + bias).argmax(1) == y_test).double().mean())


def probe(
    encoder: TrainedEncoder, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """Label probes of the frozen features on the test split, beside k-NN on raw pixels (the bar a learned
    space should clear). Empty when either split has fewer than two labelled classes."""
    y_tr, y_te = np.asarray(train[1]), np.asarray(test[1])
    if len(np.unique(y_tr[y_tr >= 0])) < 2 or len(np.unique(y_te[y_te >= 0])) < 2:
        return {}
    keep_tr, keep_te = y_tr >= 0, y_te >= 0
    x_tr = torch.from_numpy(np.asarray(train[0], dtype=np.float32)[keep_tr])
    x_te = torch.from_numpy(np.asarray(test[0], dtype=np.float32)[keep_te])
    yt_tr, yt_te = torch.from_numpy(y_tr[keep_tr]).long(), torch.from_numpy(y_te[keep_te]).long()
    f_tr, f_te = encoder.features(x_tr), encoder.features(x_te)
    return {
        "knn_accuracy": knn_accuracy(f_tr, yt_tr, f_te, yt_te),
        "linear_probe_accuracy": linear_probe_accuracy(f_tr, yt_tr, f_te, yt_te),
        "knn_accuracy_pixels": knn_accuracy(x_tr.flatten(1), yt_tr, x_te.flatten(1), yt_te),
        "knn_k": 10,
        "n_test": int(len(yt_te)),
    }


# ------------------------------------------------------------------------------------------------ storage


def save_encoder(directory: str | Path, model: SimCLREncoder, meta: dict[str, Any]) -> dict[str, Any]:
    """Save the encoder's weights (safetensors; no projection head) and metadata with their sha256, atomically."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        save_model(model, str(tmp / WEIGHTS))
        meta = {
            **meta,
            "channels": model.body[0].in_channels,
            "width": model.body[0].out_channels,
            "feature_dim": model.num_features,
            "sha256": sha256_file(tmp / WEIGHTS),
        }
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def has_encoder(directory: str | Path) -> bool:
    return (Path(directory) / META).exists() and (Path(directory) / WEIGHTS).exists()


def load_encoder(directory: str | Path) -> TrainedEncoder:
    directory = Path(directory)
    meta = json.loads((directory / META).read_text())
    model = SimCLREncoder(channels=meta["channels"], width=meta["width"], num_features=meta["feature_dim"])
    load_model(model, str(directory / WEIGHTS))
    return TrainedEncoder(model=model.eval(), meta=meta)
